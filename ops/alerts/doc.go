// Package alerts tells shop IT by e-mail when something needs a human: the WAN down for a
// while, orders stuck on their way to the cloud, an order refused from Service Bus, catalog
// documents quarantined, the disk almost full, the media cache at its quota, devices gone
// silent (docs/operations.md lists them, with what to do about each).
//
// Every check (alerts.check_interval) the daemon's Facts are matched against the rules. A rule
// whose condition has held long enough opens; it resolves when the condition no longer holds.
// Each change is stored in the database together with a notice for the mail queue, in one
// transaction, so that an alert never opens or resolves without its mail, and a restart
// neither forgets an open alert nor mails it twice.
//
// The queue is sent through the mail server (Mailer; SMTP is the real one) oldest first. A
// failure keeps every notice queued and is retried with backoff until the server takes them;
// the status shows the error meanwhile. At most alerts.max_mails_per_hour mails go in any hour:
// notices beyond that wait and go together in one digest mail. A mail is sent at least once:
// a crash between the server's acceptance and the queue's update sends it again.
package alerts
