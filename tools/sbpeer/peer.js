#!/usr/bin/env node
// sbpeer: a small AMQP 1.0 peer that behaves like Azure Service Bus for a few
// queues, so that tests can drive the real azservicebus Go SDK against it.
// No Service Bus emulator runs on the project's machines (it needs Docker).
//
// It speaks what the SDK needs and what shared/notes/TESTING.md records:
// SASL ANONYMOUS, $cbs put-token, peek-lock delivery with lock tokens, lock
// expiry and renewal, complete/abandon/dead-letter/defer, the $management
// operations the SDK uses for settling and renewing, over plain TCP and over
// WebSockets (optionally TLS). An HTTP control API lets a test enqueue
// messages, read what happened and inject faults. README.md documents it.
//
// Usage: node peer.js [--amqp-port N] [--ws-port N] [--control-port N]
//   [--host 127.0.0.1] [--queue NAME]... [--lock-duration-ms N]
//   [--max-delivery-count N] [--tls-cert FILE --tls-key FILE] [--verbose]
//   [--exit-with-stdin]
// Prints one JSON line with the bound ports to stdout once listening; logs go
// to stderr.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const tls = require('tls');
const { parseArgs } = require('util');

const rhea = require('rhea');
const WebSocket = require('ws');

const types = rhea.types;
const amqpMessage = rhea.message;

// Keep the raw bytes of every incoming message: rhea hands handlers only the
// decoded form, and re-encoding that would change value types (an int64
// application property would come back as an uint). rhea's session code calls
// message.decode through the shared module object, so wrapping it here works.
const rawDecode = amqpMessage.decode;
amqpMessage.decode = function decodeKeepingRaw(buffer) {
	const msg = rawDecode(buffer);
	Object.defineProperty(msg, 'sbpeerRaw', { value: buffer, enumerable: false });
	return msg;
};

// ---------------------------------------------------------------------------
// Options

function parseOptions(argv) {
	const { values } = parseArgs({
		args: argv,
		options: {
			'host': { type: 'string', default: '127.0.0.1' },
			'amqp-port': { type: 'string', default: '0' },
			'ws-port': { type: 'string', default: '0' },
			'amqps-port': { type: 'string', default: '0' },
			'control-port': { type: 'string', default: '0' },
			'queue': { type: 'string', multiple: true, default: [] },
			'lock-duration-ms': { type: 'string', default: '30000' },
			'max-delivery-count': { type: 'string', default: '10' },
			'tls-cert': { type: 'string' },
			'tls-key': { type: 'string' },
			'verbose': { type: 'boolean', default: false },
			'exit-with-stdin': { type: 'boolean', default: false },
		},
		strict: true,
	});
	const int = (name, min) => {
		const v = Number(values[name]);
		if (!Number.isInteger(v) || v < min) {
			throw new Error(`--${name} ${JSON.stringify(values[name])}: want an integer >= ${min}`);
		}
		return v;
	};
	if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) {
		throw new Error('--tls-cert and --tls-key go together');
	}
	const queues = [];
	for (const q of values.queue) {
		for (const name of q.split(',')) {
			if (name.trim() !== '') queues.push(name.trim());
		}
	}
	return {
		host: values.host,
		amqpPort: int('amqp-port', 0),
		wsPort: int('ws-port', 0),
		amqpsPort: int('amqps-port', 0),
		controlPort: int('control-port', 0),
		queues,
		lockDurationMs: int('lock-duration-ms', 1),
		maxDeliveryCount: int('max-delivery-count', 1),
		tlsCert: values['tls-cert'],
		tlsKey: values['tls-key'],
		verbose: values.verbose,
		exitWithStdin: values['exit-with-stdin'],
	};
}

let verbose = false;

function log(level, ...args) {
	if (level === 'debug' && !verbose) return;
	const parts = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a)));
	process.stderr.write(`${new Date().toISOString()} sbpeer ${level}: ${parts.join(' ')}\n`);
}

// ---------------------------------------------------------------------------
// AMQP encoding helpers

const SECTION = {
	header: 0x70,
	deliveryAnnotations: 0x71,
	messageAnnotations: 0x72,
	properties: 0x73,
	applicationProperties: 0x74,
	data: 0x75,
	sequence: 0x76,
	value: 0x77,
	footer: 0x78,
};

const SYMBOLIC_SECTION = {
	'amqp:header:list': 0x70,
	'amqp:delivery-annotations:map': 0x71,
	'amqp:message-annotations:map': 0x72,
	'amqp:properties:list': 0x73,
	'amqp:application-properties:map': 0x74,
	'amqp:data:binary': 0x75,
	'amqp:amqp-sequence:list': 0x76,
	'amqp:amqp-value:*': 0x77,
	'amqp:footer:map': 0x78,
};

// sectionCode returns the numeric descriptor of an encoded message section.
function sectionCode(section) {
	const d = section.descriptor && section.descriptor.value;
	if (typeof d === 'number') return d;
	if (typeof d === 'string') return SYMBOLIC_SECTION[d];
	if (Buffer.isBuffer(d)) return Number(d.readBigUInt64BE(0));
	return undefined;
}

// parseSections splits an encoded message into its sections, kept as typed
// values so that re-encoding them gives the same bytes (application property
// types, body sections) as the sender wrote.
function parseSections(buf) {
	const reader = new types.Reader(buf);
	const sections = [];
	while (reader.remaining() > 0) {
		const s = reader.read();
		const code = sectionCode(s);
		if (code === undefined) throw new Error('message section without a known descriptor');
		sections.push({ code, typed: s });
	}
	return sections;
}

function encodeTyped(list) {
	const writer = new types.Writer();
	for (const t of list) writer.write(t);
	return writer.toBuffer();
}

function describedSection(code, value) {
	return types.described(types.wrap_ulong(code), value);
}

// mapEntries turns an encoded map (typed) into [key, typedValue] pairs with
// plain JS keys.
function mapEntries(typedMap) {
	const items = typedMap && typedMap.value ? typedMap.value : [];
	const out = [];
	for (let i = 0; i + 1 < items.length; i += 2) {
		out.push([plain(items[i]), items[i + 1]]);
	}
	return out;
}

// buildMap encodes [key, typedValue] pairs; keys are symbols when symbolic
// (annotations), strings otherwise (application properties).
function buildMap(entries, symbolic) {
	const items = [];
	for (const [k, v] of entries) {
		items.push(symbolic ? types.wrap_symbol(String(k)) : types.wrap_string(String(k)));
		items.push(v);
	}
	return types.Map32(items);
}

function setEntry(entries, key, typed) {
	const i = entries.findIndex(([k]) => k === key);
	if (i >= 0) entries[i] = [key, typed];
	else entries.push([key, typed]);
}

// plain converts a decoded AMQP value to plain JS (Buffers for binary/uuid).
function plain(v) {
	return types.unwrap(v);
}

// typedFromJSON encodes a JSON value the way a Go user of the SDK would expect
// to read it back: integers as long (int64), other numbers as double.
function typedFromJSON(v) {
	if (v === null || v === undefined) return types.Null();
	if (typeof v === 'string') return types.wrap_string(v);
	if (typeof v === 'boolean') return types.wrap_boolean(v);
	if (typeof v === 'number') return Number.isInteger(v) ? types.wrap_long(v) : types.wrap_double(v);
	throw new Error(`application property value ${JSON.stringify(v)}: want string, number, boolean or null`);
}

// The SDK reads the lock token from the delivery tag in .NET GUID byte order
// and from the x-opt-lock-token annotation as an AMQP uuid in RFC order.
function dotnetGuidBytes(rfc) {
	const b = Buffer.from(rfc);
	b[0] = rfc[3]; b[1] = rfc[2]; b[2] = rfc[1]; b[3] = rfc[0];
	b[4] = rfc[5]; b[5] = rfc[4];
	b[6] = rfc[7]; b[7] = rfc[6];
	return b;
}

function newLockToken() {
	return Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex');
}

function uuidString(buf) {
	const h = buf.toString('hex');
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------
// Queues

const MESSAGE_STATE = { active: 0, deferred: 1, scheduled: 2 };

class Message {
	constructor(queue, seq, sections) {
		this.queue = queue;
		this.seq = seq;
		this.sections = sections; // [{code, typed}] as the sender encoded them
		this.enqueuedTime = Date.now();
		this.deliveryCount = 0; // AMQP header delivery-count: failed attempts so far
		this.state = 'active'; // active | locked | deferred | scheduled
		this.deferred = false;
		this.lock = null; // {token (RFC bytes), until (ms), timer, delivery}
		this.scheduleTimer = null;
		this.extraAppProps = []; // [key, typed] set by the broker (dead-letter reason...)
		this.deadLetterSource = undefined;
		// rhea decodes header and properties fields flat onto one object.
		const flat = rawDecode(encodeTyped(sections
			.filter((s) => s.code === SECTION.header || s.code === SECTION.properties)
			.map((s) => s.typed)));
		this.messageId = flat.message_id === undefined ? undefined : idString(flat.message_id);
		this.correlationId = flat.correlation_id === undefined ? undefined : idString(flat.correlation_id);
		this.subject = flat.subject;
		this.contentType = flat.content_type;
		this.header = {
			durable: flat.durable,
			priority: flat.priority,
			ttl: flat.ttl,
		};
	}

	section(code) {
		const s = this.sections.find((x) => x.code === code);
		return s ? s.typed : undefined;
	}

	applicationProperties() {
		const entries = mapEntries(this.section(SECTION.applicationProperties));
		for (const [k, v] of this.extraAppProps) setEntry(entries, k, v);
		return entries;
	}

	// encode renders the message as delivered: header with the current
	// delivery count, the lock token annotation when locked, broker message
	// annotations, then the sender's sections untouched.
	encode(lock) {
		const out = [];
		const h = this.header;
		out.push(amqpMessage.header({
			durable: h.durable,
			priority: h.priority,
			ttl: h.ttl,
			first_acquirer: this.deliveryCount === 0,
			delivery_count: this.deliveryCount,
		}).described());
		if (lock) {
			out.push(describedSection(SECTION.deliveryAnnotations, buildMap([
				['x-opt-lock-token', types.wrap_uuid(lock.token)],
			], true)));
		}
		const ann = mapEntries(this.section(SECTION.messageAnnotations));
		setEntry(ann, 'x-opt-sequence-number', types.Long(this.seq));
		setEntry(ann, 'x-opt-enqueued-time', types.wrap_timestamp(this.enqueuedTime));
		if (lock) setEntry(ann, 'x-opt-locked-until', types.wrap_timestamp(lock.until));
		if (this.deferred) setEntry(ann, 'x-opt-message-state', types.wrap_int(MESSAGE_STATE.deferred));
		if (this.deadLetterSource) setEntry(ann, 'x-opt-deadletter-source', types.wrap_string(this.deadLetterSource));
		out.push(describedSection(SECTION.messageAnnotations, buildMap(ann, true)));
		for (const s of this.sections) {
			switch (s.code) {
			case SECTION.header:
			case SECTION.deliveryAnnotations:
			case SECTION.messageAnnotations:
				break;
			case SECTION.applicationProperties:
				if (this.extraAppProps.length === 0) out.push(s.typed);
				else out.push(describedSection(SECTION.applicationProperties, buildMap(this.applicationProperties(), false)));
				break;
			default:
				out.push(s.typed);
			}
		}
		if (this.extraAppProps.length > 0 && !this.section(SECTION.applicationProperties)) {
			// Application properties go before the body; rebuild in order.
			const bodyAt = out.findIndex((t) => {
				const c = sectionCode(t);
				return c >= SECTION.data;
			});
			const ap = describedSection(SECTION.applicationProperties, buildMap(this.applicationProperties(), false));
			if (bodyAt < 0) out.push(ap);
			else out.splice(bodyAt, 0, ap);
		}
		return encodeTyped(out);
	}

	body() {
		const parts = this.sections.filter((s) => s.code === SECTION.data).map((s) => plain(s.typed));
		return parts.length ? Buffer.concat(parts.map((p) => Buffer.from(p))) : Buffer.alloc(0);
	}

	toJSON() {
		const appProps = {};
		for (const [k, v] of this.applicationProperties()) appProps[k] = jsonValue(plain(v));
		const body = this.body();
		return {
			messageId: this.messageId,
			correlationId: this.correlationId,
			subject: this.subject,
			contentType: this.contentType,
			sequenceNumber: this.seq,
			enqueuedTime: new Date(this.enqueuedTime).toISOString(),
			deliveryCount: this.deliveryCount,
			state: this.state,
			body: body.toString('utf8'),
			bodyBase64: body.toString('base64'),
			applicationProperties: appProps,
		};
	}
}

function jsonValue(v) {
	if (Buffer.isBuffer(v)) return v.toString('base64');
	if (v instanceof Date) return v.toISOString();
	if (typeof v === 'bigint') return v.toString();
	return v;
}

function idString(id) {
	if (Buffer.isBuffer(id)) return id.length === 16 ? uuidString(id) : id.toString('hex');
	return String(id);
}

class Queue {
	constructor(broker, name, opts) {
		this.broker = broker;
		this.name = name;
		this.lockDurationMs = opts.lockDurationMs;
		this.maxDeliveryCount = opts.maxDeliveryCount;
		this.messages = new Map(); // seq -> Message, every message in this queue
		this.available = []; // active, unlocked messages, by sequence number
		this.receivers = new Set(); // rhea sender links attached to this queue
		this.rr = 0;
		this.completed = []; // message ids, in completion order
		this.counters = { deliveries: 0, completed: 0, abandoned: 0, released: 0, lockExpirations: 0, lockRenewals: 0, deadLettered: 0, managementSettlements: 0 };
		this.deadLetter = null; // the $DeadLetterQueue sub-queue (none for a DLQ itself)
		this.pumping = false;
	}

	enqueue(sections, opts = {}) {
		const seq = this.broker.nextSequence++;
		const m = new Message(this, seq, sections);
		if (opts.deliveryCount) m.deliveryCount = opts.deliveryCount;
		if (opts.extraAppProps) m.extraAppProps = opts.extraAppProps;
		if (opts.deadLetterSource) m.deadLetterSource = opts.deadLetterSource;
		this.messages.set(seq, m);
		const scheduled = scheduledEnqueueTime(m);
		if (scheduled !== undefined && scheduled > Date.now()) {
			m.state = 'scheduled';
			m.scheduleTimer = setTimeout(() => {
				m.scheduleTimer = null;
				if (m.state !== 'scheduled') return;
				m.enqueuedTime = Date.now();
				m.state = 'active';
				this.makeAvailable(m);
			}, scheduled - Date.now());
		} else {
			this.makeAvailable(m);
		}
		return m;
	}

	makeAvailable(m) {
		m.state = 'active';
		// Insert by sequence number: an abandoned message goes back in front
		// of later ones, as on Service Bus.
		let lo = 0;
		let hi = this.available.length;
		while (lo < hi) {
			const mid = (lo + hi) >> 1;
			if (this.available[mid].seq < m.seq) lo = mid + 1;
			else hi = mid;
		}
		this.available.splice(lo, 0, m);
		this.pumpSoon();
	}

	takeAvailable(m) {
		const i = this.available.indexOf(m);
		if (i >= 0) this.available.splice(i, 1);
	}

	remove(m) {
		this.releaseLock(m);
		this.takeAvailable(m);
		if (m.scheduleTimer) clearTimeout(m.scheduleTimer);
		this.messages.delete(m.seq);
	}

	pumpSoon() {
		if (this.pumpScheduled) return;
		this.pumpScheduled = true;
		setImmediate(() => {
			this.pumpScheduled = false;
			this.pump();
		});
	}

	// pump delivers available messages, lowest sequence number first, to
	// receive links with credit, round-robin.
	pump() {
		for (const l of [...this.receivers]) {
			if (!linkUsable(l)) this.receivers.delete(l);
		}
		const links = [...this.receivers];
		while (this.available.length > 0 && links.length > 0) {
			let chosen = null;
			for (let i = 0; i < links.length; i++) {
				const l = links[(this.rr + i) % links.length];
				if (effectiveCredit(l) > 0) {
					chosen = l;
					this.rr = (this.rr + i + 1) % links.length;
					break;
				}
			}
			if (!chosen) break;
			const m = this.available.shift();
			this.deliver(m, chosen);
		}
		for (const l of links) finishDrain(l, this);
	}

	deliver(m, link) {
		this.counters.deliveries++;
		if (link.local.attach.snd_settle_mode === 1) {
			// receive-and-delete: pre-settled, gone once sent.
			const payload = m.encode(null);
			link.send(payload, Buffer.from(newLockToken()), 0);
			this.remove(m);
			this.recordCompleted(m);
			log('debug', `queue ${this.name}: delivered seq ${m.seq} pre-settled (receive-and-delete)`);
			return;
		}
		const token = newLockToken();
		const lock = { token, until: Date.now() + this.lockDurationMs, timer: null };
		m.lock = lock;
		m.state = 'locked';
		this.broker.locks.set(token.toString('hex'), m);
		this.armLock(m);
		const delivery = link.send(m.encode(lock), dotnetGuidBytes(token), 0);
		delivery.sbpeer = { queue: this, token };
		log('debug', `queue ${this.name}: delivered seq ${m.seq} id ${m.messageId} count ${m.deliveryCount} lock ${uuidString(token)}`);
	}

	armLock(m) {
		const lock = m.lock;
		if (lock.timer) clearTimeout(lock.timer);
		lock.timer = setTimeout(() => this.lockExpired(m, lock), Math.max(0, lock.until - Date.now()));
	}

	lockExpired(m, lock) {
		if (m.lock !== lock) return;
		this.counters.lockExpirations++;
		log('info', `queue ${this.name}: lock on seq ${m.seq} expired`);
		this.releaseLock(m);
		this.failedAttempt(m, 'lock expired');
	}

	releaseLock(m) {
		if (!m.lock) return;
		if (m.lock.timer) clearTimeout(m.lock.timer);
		this.broker.locks.delete(m.lock.token.toString('hex'));
		m.lock = null;
	}

	// failedAttempt counts an abandoned or expired delivery; past the
	// maximum delivery count the message is dead-lettered, as on Service Bus.
	failedAttempt(m, why) {
		m.deliveryCount++;
		if (m.deliveryCount >= this.maxDeliveryCount && this.deadLetter) {
			this.moveToDeadLetter(m, 'MaxDeliveryCountExceeded',
				`Message could not be consumed after ${this.maxDeliveryCount} delivery attempts.`);
			return;
		}
		if (m.deferred) {
			m.state = 'deferred';
			return;
		}
		log('debug', `queue ${this.name}: seq ${m.seq} available again (${why}), delivery count ${m.deliveryCount}`);
		this.makeAvailable(m);
	}

	complete(m) {
		this.remove(m);
		this.recordCompleted(m);
	}

	recordCompleted(m) {
		this.counters.completed++;
		this.completed.push(m.messageId === undefined ? null : m.messageId);
	}

	abandon(m, modifyProps) {
		this.counters.abandoned++;
		this.releaseLock(m);
		applyModifications(m, modifyProps);
		this.failedAttempt(m, 'abandoned');
	}

	release(m) {
		// Released (the SDK releases messages that arrive after a receive
		// call has returned): available again, delivery count unchanged.
		this.counters.released++;
		this.releaseLock(m);
		if (m.deferred) m.state = 'deferred';
		else this.makeAvailable(m);
	}

	defer(m, modifyProps) {
		this.releaseLock(m);
		applyModifications(m, modifyProps);
		m.deferred = true;
		m.state = 'deferred';
	}

	deadLetterMessage(m, reason, description, modifyProps) {
		applyModifications(m, modifyProps);
		if (!this.deadLetter) {
			// Dead-lettering from the dead-letter queue itself is not allowed
			// on Service Bus; treat it as complete here.
			this.complete(m);
			return;
		}
		this.moveToDeadLetter(m, reason, description);
	}

	moveToDeadLetter(m, reason, description) {
		this.remove(m);
		this.counters.deadLettered++;
		const extra = m.extraAppProps.slice();
		setEntry(extra, 'DeadLetterReason', types.wrap_string(reason || ''));
		setEntry(extra, 'DeadLetterErrorDescription', types.wrap_string(description || ''));
		const dm = this.deadLetter.enqueue(m.sections, {
			deliveryCount: m.deliveryCount,
			extraAppProps: extra,
			deadLetterSource: this.name,
		});
		dm.messageId = m.messageId;
		dm.originalSequenceNumber = m.seq;
		dm.deadLetterReason = reason || '';
		dm.deadLetterErrorDescription = description || '';
		log('info', `queue ${this.name}: seq ${m.seq} id ${m.messageId} dead-lettered: ${reason}: ${description}`);
	}

	stats() {
		let locked = 0;
		let deferred = 0;
		let scheduled = 0;
		for (const m of this.messages.values()) {
			if (m.state === 'locked') locked++;
			else if (m.state === 'deferred') deferred++;
			else if (m.state === 'scheduled') scheduled++;
		}
		return {
			name: this.name,
			active: this.available.length,
			locked,
			deferred,
			scheduled,
			deadLettered: this.deadLetter ? this.deadLetter.messages.size : 0,
			completed: this.counters.completed,
			deliveries: this.counters.deliveries,
			abandoned: this.counters.abandoned,
			released: this.counters.released,
			lockExpirations: this.counters.lockExpirations,
			lockRenewals: this.counters.lockRenewals,
			managementSettlements: this.counters.managementSettlements,
			receivers: [...this.receivers].filter(linkUsable).length,
		};
	}
}

function scheduledEnqueueTime(m) {
	for (const [k, v] of mapEntries(m.section(SECTION.messageAnnotations))) {
		if (k === 'x-opt-scheduled-enqueue-time') {
			const t = plain(v);
			if (t instanceof Date) return t.getTime();
			if (typeof t === 'number') return t;
		}
	}
	return undefined;
}

// applyModifications merges "properties to modify" (from an abandon, defer
// or dead-letter) into the message's application properties.
function applyModifications(m, props) {
	if (!props) return;
	for (const [k, v] of Object.entries(props)) {
		setEntry(m.extraAppProps, k, types.wrap(v));
	}
}

class Broker {
	constructor(opts) {
		this.opts = opts;
		this.queues = new Map(); // lower-case name -> Queue
		this.locks = new Map(); // lock token hex -> Message
		this.nextSequence = 1;
	}

	createQueue(name, opts = {}) {
		const key = name.toLowerCase();
		let q = this.queues.get(key);
		if (q) return { queue: q, created: false };
		const qopts = {
			lockDurationMs: opts.lockDurationMs || this.opts.lockDurationMs,
			maxDeliveryCount: opts.maxDeliveryCount || this.opts.maxDeliveryCount,
		};
		q = new Queue(this, name, qopts);
		q.deadLetter = new Queue(this, `${name}/$DeadLetterQueue`, qopts);
		this.queues.set(key, q);
		log('info', `queue ${name} created (lock ${qopts.lockDurationMs} ms, max delivery count ${qopts.maxDeliveryCount})`);
		return { queue: q, created: true };
	}

	// resolve maps an AMQP address ("orders", "orders/$DeadLetterQueue",
	// "sb://host/orders") to a queue.
	resolve(address) {
		if (typeof address !== 'string') return undefined;
		let a = address;
		const m = /^(?:amqps?|sb):\/\/[^/]+\/(.*)$/i.exec(a);
		if (m) a = m[1];
		a = a.replace(/^\/+|\/+$/g, '');
		const dlq = /\/\$deadletterqueue$/i.exec(a);
		const base = dlq ? a.slice(0, dlq.index) : a;
		const q = this.queues.get(base.toLowerCase());
		if (!q) return undefined;
		return dlq ? q.deadLetter : q;
	}

	lockOwner(tokenRfc) {
		return this.locks.get(Buffer.from(tokenRfc).toString('hex'));
	}
}

// ---------------------------------------------------------------------------
// Links and credit

function linkUsable(l) {
	return !l.sbpeerClosed && l.is_open() && l.connection.sbpeerAlive;
}

// effectiveCredit is the link credit not yet spoken for by deliveries that
// rhea has queued but not transferred (it only counts credit down when a
// transfer is written).
function effectiveCredit(l) {
	const out = l.session.outgoing;
	let queued = 0;
	for (let id = out.next_pending_delivery; id < out.next_delivery_id; id++) {
		const d = out.deliveries.by_id(id);
		if (d && d.link === l) queued++;
	}
	if (!out.available()) return 0;
	return l.credit - queued;
}

function finishDrain(l, queue) {
	if (l._draining && queue.available.length === 0 && effectiveCredit(l) === l.credit && l.credit > 0) {
		l.set_drained(true);
	}
}

// echoAttach answers an attach with the client's own source, target and
// settle modes: the SDK fails the link on any mismatch.
function echoAttach(link) {
	const r = link.remote.attach;
	link.local.attach.source = r.source ? r.source.described() : null;
	link.local.attach.target = r.target ? r.target.described() : null;
	link.local.attach.snd_settle_mode = r.snd_settle_mode;
	link.local.attach.rcv_settle_mode = r.rcv_settle_mode;
}

function refuseAttach(link, condition, description) {
	// An attach without the terminus, then a detach with the error: what the
	// spec and the SDK (go-amqp) expect for a refused link.
	if (link.is_receiver()) link.local.attach.target = null;
	else link.local.attach.source = null;
	link.close({ condition, description });
}

// ---------------------------------------------------------------------------
// The AMQP side

function startAMQP(broker) {
	const container = rhea.create_container({ id: 'sbpeer' });
	container.sasl_server_mechanisms.enable_anonymous();

	const connections = new Set();
	const accepted = {}; // listener kind -> connections accepted

	const connOptions = {
		reconnect: false,
		autoaccept: false,
		autosettle: false,
		treat_modified_as_released: false,
		container_id: 'sbpeer',
		// Deliveries whose lock expired stay unsettled until the client
		// settles them (to be told the lock is lost); room for many.
		session_buffer_size: 1 << 16,
	};

	function accept(socket, kind) {
		const conn = container.create_connection(Object.assign({ id: `${kind}-${++accept.n}` }, connOptions));
		conn.sbpeerAlive = true;
		conn.sbpeerLinks = new Set();
		conn.sbpeerReplyLinks = new Map(); // reply-to address -> sender link
		conn.sbpeerKill = () => {
			try {
				if (socket.sbpeerDestroy) socket.sbpeerDestroy();
				else if (socket.destroy) socket.destroy();
			} catch (e) {
				log('warn', `${conn.options.id}: drop: ${e.message}`);
			}
			connectionGone(conn);
		};
		connections.add(conn);
		accepted[kind] = (accepted[kind] || 0) + 1;
		conn.accept(socket);
		log('info', `${conn.options.id}: accepted`);
		return conn;
	}
	accept.n = 0;

	function connectionGone(conn) {
		if (!conn.sbpeerAlive) return;
		conn.sbpeerAlive = false;
		connections.delete(conn);
		for (const l of conn.sbpeerLinks) {
			l.sbpeerClosed = true;
			if (l.sbpeerQueue) l.sbpeerQueue.receivers.delete(l);
		}
		conn.sbpeerLinks.clear();
		conn.sbpeerReplyLinks.clear();
	}

	container.on('connection_open', (ctx) => {
		log('debug', `${ctx.connection.options.id}: open from ${JSON.stringify(ctx.connection.remote.open.container_id)} hostname ${ctx.connection.remote.open.hostname}`);
	});
	container.on('connection_close', (ctx) => {
		log('info', `${ctx.connection.options.id}: closed by client`);
		connectionGone(ctx.connection);
	});
	container.on('disconnected', (ctx) => {
		log('info', `${ctx.connection.options.id}: disconnected${ctx.error ? `: ${ctx.error.message || ctx.error}` : ''}`);
		connectionGone(ctx.connection);
	});
	container.on('connection_error', (ctx) => log('warn', `${ctx.connection.options.id}: connection error: ${JSON.stringify(ctx.connection.error)}`));
	container.on('protocol_error', (err) => log('warn', `protocol error: ${err && err.message ? err.message : err}`));
	container.on('error', (err) => log('warn', `error: ${err && err.message ? err.message : err}`));
	container.on('session_error', (ctx) => log('warn', `session error: ${JSON.stringify(ctx.session.error)}`));
	container.on('sender_error', (ctx) => log('warn', `link ${ctx.sender.name}: ${JSON.stringify(ctx.sender.error)}`));
	container.on('receiver_error', (ctx) => log('warn', `link ${ctx.receiver.name}: ${JSON.stringify(ctx.receiver.error)}`));
	container.on('session_close', (ctx) => {
		for (const l of ctx.connection.sbpeerLinks || []) {
			if (l.session === ctx.session) linkGone(l);
		}
		ctx.session.close();
	});

	function linkGone(l) {
		l.sbpeerClosed = true;
		if (l.sbpeerQueue) l.sbpeerQueue.receivers.delete(l);
		if (l.connection.sbpeerLinks) l.connection.sbpeerLinks.delete(l);
	}

	// The client receives: on a queue (peek-lock or receive-and-delete), or
	// replies on a $cbs / $management reply link.
	container.on('sender_open', (ctx) => {
		const link = ctx.sender;
		const conn = ctx.connection;
		echoAttach(link);
		conn.sbpeerLinks.add(link);
		const source = link.remote.attach.source;
		const target = link.remote.attach.target;
		const address = source ? source.address : undefined;
		if (isRPCAddress(address)) {
			const replyTo = target ? target.address : undefined;
			if (replyTo) conn.sbpeerReplyLinks.set(replyTo, link);
			link.sbpeerReplyFor = address;
			log('debug', `${conn.options.id}: reply link ${link.name} for ${address} -> ${replyTo}`);
			return;
		}
		const q = broker.resolve(address);
		if (!q) {
			log('warn', `${conn.options.id}: receive link ${link.name} on unknown entity ${address}`);
			refuseAttach(link, 'amqp:not-found', `The messaging entity '${address}' could not be found.`);
			linkGone(link);
			return;
		}
		link.sbpeerQueue = q;
		q.receivers.add(link);
		log('info', `${conn.options.id}: receiver attached to ${q.name} (link ${link.name}, rcv-settle-mode ${link.remote.attach.rcv_settle_mode}, snd-settle-mode ${link.remote.attach.snd_settle_mode})`);
		q.pumpSoon();
	});

	// The client sends: to a queue, or requests to $cbs / $management.
	container.on('receiver_open', (ctx) => {
		const link = ctx.receiver;
		const conn = ctx.connection;
		echoAttach(link);
		conn.sbpeerLinks.add(link);
		const target = link.remote.attach.target;
		const address = target ? target.address : undefined;
		if (isRPCAddress(address)) {
			link.sbpeerRPC = address;
			return;
		}
		const q = broker.resolve(address);
		if (!q) {
			refuseAttach(link, 'amqp:not-found', `The messaging entity '${address}' could not be found.`);
			linkGone(link);
			return;
		}
		link.sbpeerSendTo = q;
		log('info', `${conn.options.id}: sender attached to ${q.name} (link ${link.name})`);
	});

	container.on('sender_close', (ctx) => { linkGone(ctx.sender); });
	container.on('receiver_close', (ctx) => { linkGone(ctx.receiver); });

	container.on('sendable', (ctx) => {
		const q = ctx.sender.sbpeerQueue;
		if (q) q.pumpSoon();
	});
	container.on('sender_draining', (ctx) => {
		const q = ctx.sender.sbpeerQueue;
		if (q) q.pump();
		else if (ctx.sender.credit > 0) ctx.sender.set_drained(true);
	});

	container.on('message', (ctx) => {
		const link = ctx.receiver;
		const delivery = ctx.delivery;
		try {
			if (link.sbpeerRPC) {
				settleIncoming(delivery, amqpMessage.accepted().described());
				handleRPC(broker, ctx.connection, link.sbpeerRPC, ctx.message);
				return;
			}
			const q = link.sbpeerSendTo;
			if (!q) {
				settleIncoming(delivery, amqpMessage.rejected({ error: { condition: 'amqp:not-found', description: 'no entity' } }).described());
				return;
			}
			const raw = ctx.message.sbpeerRaw;
			const m = q.enqueue(parseSections(raw));
			log('debug', `queue ${q.name}: enqueued seq ${m.seq} id ${m.messageId} from an AMQP sender`);
			settleIncoming(delivery, amqpMessage.accepted().described());
		} catch (e) {
			log('warn', `${ctx.connection.options.id}: message on ${link.name}: ${e.stack || e}`);
			settleIncoming(delivery, amqpMessage.rejected({ error: { condition: 'amqp:internal-error', description: String(e.message || e) } }).described());
		}
	});

	// Settlement of deliveries on receive links: the client's disposition
	// arrives unsettled (rcv-settle-mode second); answer with a settled one.
	const onOutcome = (kind) => (ctx) => {
		try {
			settleOutgoing(broker, ctx.delivery, kind);
		} catch (e) {
			log('warn', `settle (${kind}): ${e.stack || e}`);
		}
	};
	container.on('accepted', onOutcome('accepted'));
	container.on('rejected', onOutcome('rejected'));
	container.on('modified', onOutcome('modified'));
	container.on('released', onOutcome('released'));
	container.on('settled', (ctx) => {
		// A disposition that settles without an outcome (or after ours).
		const d = ctx.delivery;
		if (d.sbpeer && !d.sbpeer.done && !d.remote_state) {
			settleOutgoing(broker, d, 'released');
		}
	});

	return { container, accept, connections, accepted };
}

function isRPCAddress(address) {
	return typeof address === 'string' && (address === '$cbs' || /\/\$management$/i.test(address) || address === '$management');
}

// forget lets rhea drop a delivery from the session's buffer without
// sending anything.
function forget(delivery) {
	delivery.settled = true;
	delivery.remote_settled = true;
}

function settleIncoming(delivery, state) {
	if (delivery.remote_settled) return;
	delivery.update(true, state);
}

const LOCK_LOST_DESCRIPTION = 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.';

function settleOutgoing(broker, delivery, kind) {
	const info = delivery.sbpeer;
	if (!info || info.done) return;
	info.done = true;
	if (delivery.link.sbpeerClosed) {
		// A disposition that crossed our detach of its link: the client
		// will see the link gone and settle by lock token on $management.
		// Answering here would reference a link the client has closed
		// (go-amqp ends the session with amqp:session:unattached-handle).
		log('info', `queue ${info.queue.name}: ignored ${kind} on detached link ${delivery.link.name}`);
		forget(delivery);
		return;
	}
	const q = info.queue;
	const m = broker.lockOwner(info.token);
	const reply = (state) => {
		if (delivery.remote_settled) return;
		delivery.update(true, state);
		// In rcv-settle-mode second the client settles silently once it sees
		// our settled disposition; mark it so rhea frees the delivery.
		delivery.remote_settled = true;
	};
	if (!m || !m.lock || !m.lock.token.equals(info.token)) {
		log('info', `queue ${q.name}: ${kind} with lost lock ${uuidString(info.token)}`);
		reply(amqpMessage.rejected({ error: { condition: 'com.microsoft:message-lock-lost', description: LOCK_LOST_DESCRIPTION } }).described());
		return;
	}
	const state = delivery.remote_state;
	switch (kind) {
	case 'accepted':
		q.complete(m);
		log('info', `queue ${q.name}: seq ${m.seq} id ${m.messageId} completed`);
		reply(amqpMessage.accepted().described());
		break;
	case 'rejected': {
		const err = state && state.error ? state.error : {};
		const errInfo = err.info || {};
		const reason = errInfo.DeadLetterReason !== undefined ? String(errInfo.DeadLetterReason) : (err.condition || '');
		const description = errInfo.DeadLetterErrorDescription !== undefined ? String(errInfo.DeadLetterErrorDescription) : (err.description || '');
		const modify = {};
		for (const [k, v] of Object.entries(errInfo)) {
			if (k !== 'DeadLetterReason' && k !== 'DeadLetterErrorDescription') modify[k] = v;
		}
		q.deadLetterMessage(m, reason, description, modify);
		// Settled, without echoing the Rejected state: go-amqp would turn a
		// rejected-with-error answer into an error for the caller.
		reply(undefined);
		break;
	}
	case 'modified': {
		const modify = state && state.message_annotations ? state.message_annotations : undefined;
		if (state && state.undeliverable_here) {
			q.defer(m, modify);
			log('info', `queue ${q.name}: seq ${m.seq} id ${m.messageId} deferred`);
		} else {
			q.abandon(m, modify);
			log('info', `queue ${q.name}: seq ${m.seq} id ${m.messageId} abandoned`);
		}
		reply(undefined);
		break;
	}
	case 'released':
		q.release(m);
		log('debug', `queue ${q.name}: seq ${m.seq} released`);
		reply(undefined);
		break;
	default:
		reply(undefined);
	}
}

// ---------------------------------------------------------------------------
// $cbs and $management

function reply(conn, request, status, description, body) {
	const replyTo = request.reply_to;
	const link = replyTo ? conn.sbpeerReplyLinks.get(replyTo) : undefined;
	if (!link || !linkUsable(link)) {
		log('warn', `${conn.options.id}: no reply link for ${replyTo}; dropping the answer to ${JSON.stringify(request.application_properties)}`);
		return;
	}
	const msg = {
		correlation_id: request.message_id,
		application_properties: {
			// The SDK insists on an AMQP int32; a JS number would encode as uint.
			'status-code': types.Int(status),
			'status-description': description,
		},
	};
	if (body !== undefined) msg.body = body;
	link.send(msg);
}

function handleRPC(broker, conn, address, request) {
	const props = request.application_properties || {};
	const op = props.operation;
	if (address === '$cbs') {
		if (op !== 'put-token') {
			reply(conn, request, 400, `unsupported $cbs operation ${op}`);
			return;
		}
		log('debug', `${conn.options.id}: put-token for ${props.name} (${props.type})`);
		reply(conn, request, 202, 'Accepted');
		return;
	}
	const entity = address.replace(/\/?\$management$/i, '');
	const q = broker.resolve(entity);
	if (!q) {
		reply(conn, request, 404, `The messaging entity '${entity}' could not be found.`);
		return;
	}
	const body = request.body && typeof request.body === 'object' ? request.body : {};
	try {
		const handler = MANAGEMENT[op];
		if (!handler) {
			log('warn', `${conn.options.id}: unsupported management operation ${op}`);
			reply(conn, request, 501, `sbpeer does not implement ${op}`);
			return;
		}
		const [status, description, value] = handler(broker, q, body);
		reply(conn, request, status, description, value);
	} catch (e) {
		log('warn', `${conn.options.id}: ${op}: ${e.stack || e}`);
		reply(conn, request, 500, String(e.message || e));
	}
}

function lockTokens(body) {
	const tokens = body['lock-tokens'];
	if (!Array.isArray(tokens)) throw new Error('lock-tokens missing');
	return tokens.map((t) => Buffer.from(t));
}

const MANAGEMENT = {
	'com.microsoft:renew-lock': (broker, q, body) => {
		const tokens = lockTokens(body);
		const expirations = [];
		for (const token of tokens) {
			const m = broker.lockOwner(token);
			if (!m || !m.lock || m.queue !== q) {
				return [410, LOCK_LOST_DESCRIPTION];
			}
			m.lock.until = Date.now() + q.lockDurationMs;
			q.armLock(m);
			q.counters.lockRenewals++;
			expirations.push(m.lock.until);
			log('debug', `queue ${q.name}: lock ${uuidString(token)} on seq ${m.seq} renewed until ${new Date(m.lock.until).toISOString()}`);
		}
		return [200, 'OK', { expirations: types.wrap_array(expirations, types.Timestamp.typecode) }];
	},

	'com.microsoft:update-disposition': (broker, q, body) => {
		const status = String(body['disposition-status'] || '');
		const tokens = lockTokens(body);
		const modify = body['properties-to-modify'] || undefined;
		for (const token of tokens) {
			const m = broker.lockOwner(token);
			if (!m || !m.lock || m.queue !== q) {
				return [410, LOCK_LOST_DESCRIPTION];
			}
			switch (status) {
			case 'completed':
				q.complete(m);
				break;
			case 'abandoned':
				q.abandon(m, modify);
				break;
			case 'suspended':
				q.deadLetterMessage(m,
					body['deadletter-reason'] === undefined ? '' : String(body['deadletter-reason']),
					body['deadletter-description'] === undefined ? '' : String(body['deadletter-description']),
					modify);
				break;
			case 'defered':
			case 'deferred':
				q.defer(m, modify);
				break;
			default:
				return [400, `unknown disposition-status ${status}`];
			}
			q.counters.managementSettlements++;
			log('info', `queue ${q.name}: seq ${m.seq} id ${m.messageId} ${status} through $management`);
		}
		return [200, 'OK', {}];
	},

	'com.microsoft:peek-message': (broker, q, body) => {
		const from = Number(body['from-sequence-number'] || 0);
		const count = Number(body['message-count'] || 1);
		const found = [...q.messages.values()]
			.filter((m) => m.seq >= from)
			.sort((a, b) => a.seq - b.seq)
			.slice(0, count);
		if (found.length === 0) return [204, 'No messages'];
		return [200, 'OK', { messages: found.map((m) => ({ message: m.encode(null) })) }];
	},

	'com.microsoft:schedule-message': (broker, q, body) => {
		const entries = Array.isArray(body.messages) ? body.messages : [];
		const seqs = [];
		for (const e of entries) {
			const m = q.enqueue(parseSections(Buffer.from(e.message)));
			seqs.push(m.seq);
			log('info', `queue ${q.name}: scheduled seq ${m.seq} id ${m.messageId} (${m.state})`);
		}
		return [200, 'OK', { 'sequence-numbers': types.wrap_array(seqs, types.Long.typecode) }];
	},

	'com.microsoft:cancel-scheduled-message': (broker, q, body) => {
		const seqs = Array.isArray(body['sequence-numbers']) ? body['sequence-numbers'] : [];
		for (const s of seqs) {
			const m = q.messages.get(Number(s));
			if (m && m.state === 'scheduled') q.remove(m);
		}
		return [200, 'OK', {}];
	},
};

// ---------------------------------------------------------------------------
// Listeners and faults

class Faults {
	constructor() {
		this.refusing = false;
		this.refuseTimer = null;
		this.refused = 0; // connections refused so far
		this.dropped = 0; // connections dropped so far
	}

	stats() {
		return { refusing: this.refusing, refused: this.refused, dropped: this.dropped };
	}

	setRefuse(on, forMs) {
		if (this.refuseTimer) clearTimeout(this.refuseTimer);
		this.refuseTimer = null;
		this.refusing = on;
		if (on && forMs > 0) {
			this.refuseTimer = setTimeout(() => {
				this.refusing = false;
				this.refuseTimer = null;
				log('info', 'faults: accepting connections again');
			}, forMs);
		}
	}
}

function listen(server, port, host) {
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => {
			server.removeListener('error', reject);
			server.on('error', (e) => log('warn', `listener: ${e.message}`));
			resolve(server.address().port);
		});
	});
}

async function main() {
	let opts;
	try {
		opts = parseOptions(process.argv.slice(2));
	} catch (e) {
		process.stderr.write(`sbpeer: ${e.message}\n`);
		process.exit(2);
	}
	verbose = opts.verbose;
	const broker = new Broker(opts);
	for (const q of opts.queues) broker.createQueue(q);
	const faults = new Faults();
	const amqp = startAMQP(broker);

	const refuseSocket = (socket, kind) => {
		faults.refused++;
		log('info', `faults: refused a ${kind} connection`);
		socket.destroy();
	};

	// Plain AMQP over TCP.
	const tcp = net.createServer((socket) => {
		if (faults.refusing) return refuseSocket(socket, 'tcp');
		socket.setNoDelay(true);
		socket.on('error', () => {});
		amqp.accept(socket, 'tcp');
	});

	// AMQP over WebSocket, at the path Service Bus uses, subprotocol amqp.
	let tlsOpts = null;
	if (opts.tlsCert) {
		tlsOpts = { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) };
	}
	const wss = new WebSocket.Server({
		noServer: true,
		perMessageDeflate: false,
		handleProtocols: (protocols) => (protocols.has('amqp') ? 'amqp' : false),
	});
	const httpServer = tlsOpts ? https.createServer(tlsOpts) : http.createServer();
	httpServer.on('request', (req, res) => {
		res.writeHead(426, { 'Content-Type': 'text/plain' });
		res.end('sbpeer: WebSocket upgrade expected at /$servicebus/websocket\n');
	});
	httpServer.on('upgrade', (req, socket, head) => {
		socket.on('error', () => {});
		const path = (req.url || '').split('?')[0];
		const deny = (code, text) => {
			socket.end(`HTTP/1.1 ${code} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
		};
		if (faults.refusing) {
			faults.refused++;
			log('info', 'faults: refused a WebSocket connection');
			deny(503, 'Service Unavailable');
			return;
		}
		if (path !== '/$servicebus/websocket') {
			deny(404, 'Not Found');
			return;
		}
		const offered = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
		if (!offered.includes('amqp')) {
			log('warn', 'WebSocket upgrade without subprotocol amqp refused');
			deny(400, 'Bad Request');
			return;
		}
		wss.handleUpgrade(req, socket, head, (ws) => {
			// Dropping a WebSocket connection: terminate() cuts the TCP
			// connection without a close handshake, like a vanished namespace.
			ws.sbpeerDestroy = () => ws.terminate();
			const wrapped = wrapWebSocket(ws);
			amqp.accept(wrapped, tlsOpts ? 'wss' : 'ws');
		});
	});

	// Optional AMQPS (TLS on the AMQP port), the SDK's default production shape.
	let amqps = null;
	if (tlsOpts) {
		amqps = tls.createServer(tlsOpts, (socket) => {
			if (faults.refusing) return refuseSocket(socket, 'amqps');
			socket.on('error', () => {});
			amqp.accept(socket, 'amqps');
		});
		amqps.on('tlsClientError', (e) => log('warn', `amqps: TLS: ${e.message}`));
	}

	const control = http.createServer((req, res) => handleControl(broker, amqp, faults, req, res));

	const ports = {};
	ports.amqp = await listen(tcp, opts.amqpPort, opts.host);
	ports.ws = await listen(httpServer, opts.wsPort, opts.host);
	if (amqps) ports.amqps = await listen(amqps, opts.amqpsPort, opts.host);
	ports.control = await listen(control, opts.controlPort, opts.host);
	ports.tls = Boolean(tlsOpts);
	process.stdout.write(`${JSON.stringify(ports)}\n`);
	log('info', `listening on ${opts.host}: ${JSON.stringify(ports)}`);

	const stop = (sig) => {
		log('info', `${sig}: stopping`);
		for (const c of [...amqp.connections]) c.sbpeerKill();
		process.exit(0);
	};
	process.on('SIGTERM', () => stop('SIGTERM'));
	process.on('SIGINT', () => stop('SIGINT'));
	if (opts.exitWithStdin) {
		// The parent holds our stdin open; if it dies without stopping us
		// (a killed test binary), stdin ends and so do we.
		process.stdin.on('end', () => stop('stdin closed'));
		process.stdin.on('error', () => stop('stdin error'));
		process.stdin.resume();
	}
}

// wrapWebSocket adapts a ws connection to the socket interface rhea's
// Connection uses (rhea's own ws wrapper forgets pending errors on close).
function wrapWebSocket(ws) {
	const handlers = {};
	ws.binaryType = 'nodebuffer';
	ws.on('message', (data, isBinary) => {
		if (!isBinary) {
			// AMQP over WebSocket is binary messages only.
			log('warn', 'WebSocket text message: closing the connection');
			ws.close(1003, 'binary messages only');
			return;
		}
		if (handlers.data) handlers.data(Buffer.isBuffer(data) ? data : Buffer.concat(data));
	});
	ws.on('close', () => { if (handlers.end) handlers.end(); });
	ws.on('error', (e) => { if (handlers.error) handlers.error(e); });
	return {
		sbpeerDestroy: () => ws.terminate(),
		end: () => ws.close(),
		destroy: () => ws.terminate(),
		write: (data) => {
			if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: true });
		},
		on: (event, handler) => { handlers[event] = handler; },
		get_id_string: () => 'websocket',
	};
}

// ---------------------------------------------------------------------------
// Control API (HTTP JSON)

const MAX_BODY = 4 << 20;

function handleControl(broker, amqp, faults, req, res) {
	const send = (status, obj) => {
		const body = JSON.stringify(obj);
		res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
		res.end(body);
	};
	let size = 0;
	const chunks = [];
	req.on('data', (c) => {
		size += c.length;
		if (size > MAX_BODY) {
			send(413, { error: 'body too large' });
			req.destroy();
			return;
		}
		chunks.push(c);
	});
	req.on('end', () => {
		if (size > MAX_BODY) return;
		let body = {};
		const text = Buffer.concat(chunks).toString('utf8');
		if (text.trim() !== '') {
			try {
				body = JSON.parse(text);
			} catch (e) {
				send(400, { error: `body is not JSON: ${e.message}` });
				return;
			}
		}
		try {
			const [status, out] = route(broker, amqp, faults, req.method, new URL(req.url, 'http://x').pathname, body);
			send(status, out);
		} catch (e) {
			log('warn', `control ${req.method} ${req.url}: ${e.stack || e}`);
			send(400, { error: String(e.message || e) });
		}
	});
}

function route(broker, amqp, faults, method, path, body) {
	if (path === '/healthz' && method === 'GET') return [200, { ok: true }];
	if (path === '/queues' && method === 'GET') {
		return [200, [...broker.queues.values()].map((q) => q.stats())];
	}
	if (path === '/faults' && method === 'GET') return [200, faults.stats()];
	if (path === '/connections' && method === 'GET') {
		return [200, { open: amqp.connections.size, accepted: Object.assign({}, amqp.accepted) }];
	}
	if (path === '/faults' && method === 'POST') {
		const drop = body.drop === undefined ? (body.refuse === undefined && !body.detachReceivers) : Boolean(body.drop);
		if (body.refuse !== undefined) faults.setRefuse(Boolean(body.refuse), Number(body.refuseForMs || 0));
		let dropped = 0;
		if (drop) {
			for (const c of [...amqp.connections]) {
				c.sbpeerKill();
				dropped++;
			}
			faults.dropped += dropped;
			log('info', `faults: dropped ${dropped} connections`);
		}
		let detached = 0;
		if (body.detachReceivers) {
			// The service detaching receive links (it does on entity updates
			// and idle links) while the connection stays up.
			for (const c of amqp.connections) {
				for (const l of [...c.sbpeerLinks]) {
					if (!l.sbpeerQueue || !linkUsable(l)) continue;
					l.sbpeerClosed = true;
					l.sbpeerQueue.receivers.delete(l);
					// Deliveries not transferred yet must not follow the
					// detach (rhea does not check); their locks expire.
					l.credit = 0;
					l.close({ condition: 'amqp:link:detach-forced', description: 'sbpeer: receive link detached by a fault injection' });
					detached++;
				}
			}
			log('info', `faults: detached ${detached} receive links`);
		}
		return [200, Object.assign(faults.stats(), { dropped, detached })];
	}
	const m = /^\/queues\/([^/]+)(\/messages|\/deadletter|\/completed)?$/.exec(path);
	if (!m) return [404, { error: `no route ${method} ${path}` }];
	const name = decodeURIComponent(m[1]);
	const sub = m[2] || '';
	if (sub === '' && method === 'PUT') {
		const { queue, created } = broker.createQueue(name, {
			lockDurationMs: body.lockDurationMs,
			maxDeliveryCount: body.maxDeliveryCount,
		});
		return [created ? 201 : 200, queue.stats()];
	}
	const q = broker.resolve(name);
	if (!q) return [404, { error: `no queue ${name}` }];
	if (sub === '' && method === 'GET') return [200, q.stats()];
	if (sub === '/messages' && method === 'POST') {
		const msg = q.enqueue(parseSections(encodeControlMessage(body)));
		log('info', `queue ${q.name}: enqueued seq ${msg.seq} id ${msg.messageId} from the control API`);
		return [201, { sequenceNumber: msg.seq, enqueuedTime: new Date(msg.enqueuedTime).toISOString() }];
	}
	if (sub === '/messages' && method === 'GET') {
		return [200, [...q.messages.values()].sort((a, b) => a.seq - b.seq).map((x) => x.toJSON())];
	}
	if (sub === '/deadletter' && method === 'GET') {
		if (!q.deadLetter) return [404, { error: `${q.name} has no dead-letter queue` }];
		return [200, [...q.deadLetter.messages.values()].sort((a, b) => a.seq - b.seq).map((x) => Object.assign(x.toJSON(), {
			deadLetterReason: x.deadLetterReason,
			deadLetterErrorDescription: x.deadLetterErrorDescription,
			originalSequenceNumber: x.originalSequenceNumber,
		}))];
	}
	if (sub === '/completed' && method === 'GET') return [200, q.completed.slice()];
	return [405, { error: `${method} not allowed on ${path}` }];
}

// encodeControlMessage builds an AMQP message from the control API's JSON:
// the body goes in one data section (a string as UTF-8, bodyBase64 decoded,
// any other JSON value serialized), as the SDK's senders do.
function encodeControlMessage(body) {
	let bytes;
	if (body.bodyBase64 !== undefined) bytes = Buffer.from(String(body.bodyBase64), 'base64');
	else if (typeof body.body === 'string') bytes = Buffer.from(body.body, 'utf8');
	else if (body.body === undefined) bytes = Buffer.alloc(0);
	else bytes = Buffer.from(JSON.stringify(body.body), 'utf8');
	const messageId = body.messageId !== undefined ? String(body.messageId) : crypto.randomUUID();
	const sections = [
		amqpMessage.header({ durable: true }).described(),
	];
	const props = { message_id: messageId };
	if (body.contentType) props.content_type = String(body.contentType);
	if (body.correlationId) props.correlation_id = String(body.correlationId);
	if (body.subject) props.subject = String(body.subject);
	if (body.sessionId) props.group_id = String(body.sessionId);
	if (body.scheduledEnqueueTime) {
		sections.push(describedSection(SECTION.messageAnnotations, buildMap([
			['x-opt-scheduled-enqueue-time', types.wrap_timestamp(Date.parse(body.scheduledEnqueueTime))],
		], true)));
	}
	sections.push(amqpMessage.properties(props).described());
	const ap = body.applicationProperties || {};
	if (typeof ap !== 'object' || Array.isArray(ap)) throw new Error('applicationProperties: want an object');
	const entries = Object.entries(ap).map(([k, v]) => [k, typedFromJSON(v)]);
	if (entries.length > 0) sections.push(describedSection(SECTION.applicationProperties, buildMap(entries, false)));
	sections.push(describedSection(SECTION.data, types.wrap_binary(bytes)));
	return encodeTyped(sections);
}

process.on('uncaughtException', (e) => {
	// Never crash on a client's odd frame: log it and carry on serving.
	log('error', `uncaught: ${e && e.stack ? e.stack : e}`);
});
process.on('unhandledRejection', (e) => {
	log('error', `unhandled rejection: ${e && e.stack ? e.stack : e}`);
});

main().catch((e) => {
	process.stderr.write(`sbpeer: ${e && e.stack ? e.stack : e}\n`);
	process.exit(1);
});
