// The status page's live view (docs/operations.md#the-status-page). Everything it shows comes
// from the server's snapshot stream and is written with textContent, never as HTML.
'use strict';

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const byId = (id) => document.getElementById(id);
  const good = new Set(['ok', 'connected', 'online', 'idle']);
  const off = new Set(['disabled', 'off', 'never', 'not_configured', 'starting', 'unknown', 'connecting']);
  let lastSnapshot = null;

  function setText(id, value) {
    const el = byId(id);
    if (el) el.textContent = value;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return 'never';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function ago(iso, now) {
    if (!iso) return 'never';
    return duration((now - Date.parse(iso)) / 1000) + ' ago';
  }

  function size(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function badge(id, state) {
    const el = byId(id);
    el.textContent = state.replace(/_/g, ' ');
    el.className = 'badge ' + (good.has(state) ? 'ok' : off.has(state) ? 'off' : 'bad');
  }

  function cell(content) {
    const td = document.createElement('td');
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  }

  function fill(tbodyId, rows, empty, columns) {
    const tbody = byId(tbodyId);
    const trs = rows.map((cells) => {
      const tr = document.createElement('tr');
      cells.forEach((c) => tr.appendChild(cell(c)));
      return tr;
    });
    if (trs.length === 0) {
      const tr = document.createElement('tr');
      const td = cell(empty);
      td.colSpan = columns;
      td.className = 'muted';
      tr.appendChild(td);
      trs.push(tr);
    }
    tbody.replaceChildren(...trs);
    return trs;
  }

  function post(path) {
    return fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } })
      .then(async (r) => {
        const body = await r.json().catch(() => ({}));
        if (r.status === 401) { location.reload(); }
        if (!r.ok) throw new Error(body.detail || r.statusText);
        return body;
      });
  }

  // showFailure shows why something failed: what an action of the operator's met (fromAction)
  // until their next action ends, what the live view met until the next snapshot; both when both
  // failed.
  const failures = { action: '', live: '' };
  function showFailure(message, fromAction) {
    failures[fromAction ? 'action' : 'live'] = message;
    const text = [failures.action, failures.live].filter(Boolean).join(' · ');
    const el = byId('failure');
    el.textContent = text;
    el.hidden = !text;
  }

  // armed: the buttons tapped once, by key, until when a second tap does the action; running: the
  // actions under way; shown: how to redraw the button of a key now on the page. All outlive the
  // tables, which every snapshot builds anew.
  const armed = new Map();
  const running = new Set();
  const shown = new Map();

  // twoStep asks for a second tap, within 5 seconds, before an action that cannot be undone: no
  // dialog box, which tablets show badly.
  function twoStep(key, label, confirmLabel, action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'danger';
    const show = () => {
      const until = armed.get(key);
      if (until && until <= Date.now()) armed.delete(key);
      b.textContent = armed.has(key) ? confirmLabel : label;
      b.disabled = running.has(key);
    };
    shown.set(key, show);
    const redraw = () => (shown.get(key) || show)(); // the button on the page now
    show();
    const left = armed.has(key) ? armed.get(key) - Date.now() : 0;
    if (left > 0) setTimeout(redraw, left);
    b.addEventListener('click', () => {
      if (!armed.has(key) || armed.get(key) <= Date.now()) {
        armed.set(key, Date.now() + 5000);
        show();
        setTimeout(redraw, 5000);
        return;
      }
      armed.delete(key);
      running.add(key);
      show();
      action().then(() => { running.delete(key); redraw(); showFailure('', true); },
        (e) => { running.delete(key); redraw(); showFailure(e.message, true); });
    });
    return b;
  }

  function renderWAN(st) {
    badge('wan-cloud', st.wan.state);
    setText('wan-cloud-detail', st.wan.last_error || (st.wan.route ? 'via ' + st.wan.route : ''));
    const sb = st.servicebus;
    badge('wan-servicebus', sb ? sb.state : 'disabled');
    setText('wan-servicebus-detail', sb ? (sb.last_error || (sb.received + ' received, ' + sb.dead_lettered + ' dead-lettered')) : 'not used');
    const m = st.media;
    badge('wan-blob', m ? m.state : 'disabled');
    setText('wan-blob-detail', m ? (m.last_error || m.source) : 'not used');
    const logs = st.logs_shipping;
    badge('wan-logs', logs ? logs.state : 'disabled');
    setText('wan-logs-detail', logs ? (logs.last_error || (logs.shipped + ' records sent, ' + logs.buffered + ' waiting, ' + logs.dropped + ' dropped')) : 'off (logs.ship.enabled)');
    const sup = st.support;
    badge('wan-support', sup ? sup.state : 'disabled');
    setText('wan-support-detail', sup ? (sup.last_error || (sup.answered + ' requests answered, ' + sup.refused + ' refused')) : 'off (support.servicebus.enabled)');
  }

  function renderAlerts(st) {
    const a = st.alerts;
    const list = byId('alert-list');
    const open = a ? a.open : [];
    setText('alert-count', open.length === 0 ? 'none' : String(open.length));
    byId('alert-count').className = 'badge ' + (open.length === 0 ? 'ok' : 'bad');
    list.replaceChildren(...open.map((o) => {
      const li = document.createElement('li');
      const b = document.createElement('strong');
      b.textContent = o.title;
      li.appendChild(b);
      li.appendChild(document.createTextNode(' — ' + o.summary));
      return li;
    }));
    setText('mail-state', a ? a.mail + (a.last_error ? ': ' + a.last_error : '') : 'off');
  }

  function renderCatalog(st) {
    fill('collections', st.collections.map((c) => [
      c.name, duration(c.data_age_seconds), String(c.remaining), c.rows.toLocaleString(), String(c.quarantined),
    ]), 'no collections', 5);
  }

  function renderOrders(snap, now) {
    const o = snap.status.orders;
    setText('orders-today', String(snap.orders_today));
    setText('outbox-backlog', String(o.outbox_pending));
    setText('outbox-oldest', o.oldest_pending_at ? ago(o.oldest_pending_at, now) : 'none waiting');
    setText('outbox-rejected', String(o.outbox_rejected));
  }

  function renderDevices(snap, now) {
    const sum = snap.status.devices;
    setText('devices-online', String(sum.online));
    setText('devices-offline', String(sum.offline));
    const live = snap.devices.filter((d) => !d.revoked);
    const rows = fill('device-rows', live.map((d) => [
      d.name || d.id, d.kind, d.online ? 'online' : 'offline', ago(d.last_seen, now), d.push,
      twoStep('revoke ' + d.id, 'Revoke', 'Tap again to revoke', () => post('/status/devices/' + encodeURIComponent(d.id) + '/revoke')),
    ]), 'no device paired yet', 6);
    live.forEach((d, i) => { rows[i].dataset.deviceId = d.id; rows[i].className = d.online ? '' : 'offline'; });
    fill('unpaired-rows', snap.unpaired.map((d) => [d.name || d.device_id, d.kind, d.addr, ago(d.last_seen, now)]),
      'none', 4);
  }

  function renderMedia(st) {
    const m = st.media;
    setText('media-files', m ? m.files.toLocaleString() : 'off');
    setText('media-bytes', m ? size(m.bytes) + (m.quota_bytes ? ' of ' + size(m.quota_bytes) : '') : '–');
    setText('media-pending', m ? m.pending + ' (' + size(m.pending_bytes) + ')' : '–');
    setText('media-quarantined', m ? String(m.quarantined) : '–');
  }

  function renderBackOffice(st, now) {
    const bo = st.backoffice;
    const targets = bo && bo.targets ? bo.targets : [];
    const section = byId('backoffice');
    // Shown when a run failed, whatever is configured: a run also finishes an order file the
    // other mode's folder holds (back-office.md), and its error belongs here.
    section.hidden = !bo || (targets.length === 0 && !bo.import && !bo.last_error);
    if (section.hidden) return;
    setText('backoffice-run', bo.last_run ? ago(bo.last_run, now) : 'not yet');
    setText('backoffice-error', bo.last_error ? '· failed: ' + bo.last_error : bo.last_success ? '· ok' : '');
    fill('backoffice-rows', targets.map((x) => [
      x.name.replace(/_/g, ' '), x.destination || '', String(x.exported), String(x.pending), String(x.failed),
    ]), 'no export configured', 5);
    const imp = bo.import;
    byId('backoffice-import').hidden = !imp;
    if (imp) {
      const last = imp.last_failed && imp.last_failed.error ? ' (last refused: ' + imp.last_failed.name + ': ' + imp.last_failed.error + ')' : '';
      setText('backoffice-import', 'Stock files from ' + imp.dir + ': ' + imp.done + ' imported, ' + imp.failed + ' refused' + last + '.');
    }
  }

  function renderWebhook(snap) {
    const section = byId('webhook');
    const failures = snap.webhook_failures;
    section.hidden = failures === null;
    if (failures === null) return;
    const rows = fill('webhook-rows', failures.map((f) => [
      '#' + f.number, new Date(f.at).toLocaleString(), f.reason,
      twoStep('retry ' + f.order_id, 'Retry', 'Tap again to send again', () => post('/status/webhook/' + encodeURIComponent(f.order_id) + '/retry')),
    ]), 'none', 4);
    failures.forEach((f, i) => { rows[i].dataset.orderId = f.order_id; });
  }

  function render(snap) {
    lastSnapshot = snap;
    const st = snap.status;
    const now = Date.parse(snap.generated_at);
    setText('uptime', duration(st.uptime_seconds));
    byId('mode').hidden = st.mode !== 'test';
    renderWAN(st);
    renderAlerts(st);
    renderCatalog(st);
    renderOrders(snap, now);
    renderDevices(snap, now);
    renderMedia(st);
    renderBackOffice(st, now);
    renderWebhook(snap);
  }

  function setLive(ok, text) {
    const el = byId('live');
    el.textContent = text;
    el.className = 'badge ' + (ok ? 'ok' : 'warn');
  }

  byId('new-code').addEventListener('click', () => {
    post('/status/pairing-codes').then((c) => {
      const digits = c.code.replace(/\D/g, '');
      setText('pairing-code', digits.slice(0, 4) + '-' + digits.slice(4));
      byId('pairing-qr').src = c.qr;
      setText('pairing-expires', new Date(c.expires_at).toLocaleTimeString());
      byId('pairing-result').hidden = false;
      showFailure('', true);
    }, (e) => showFailure(e.message, true));
  });

  const stream = new EventSource('/status/events');
  stream.addEventListener('snapshot', (e) => {
    render(JSON.parse(e.data));
    showFailure('');
    setLive(true, 'live');
  });
  stream.addEventListener('failure', (e) => showFailure('The server could not read its status: ' + JSON.parse(e.data).error));
  stream.addEventListener('logout', () => { stream.close(); location.reload(); });
  stream.addEventListener('error', () => setLive(false, lastSnapshot ? 'reconnecting…' : 'connecting…'));
})();
