// Package config holds storeedge's configuration: its keys, their defaults, how they are read
// and how they are checked.
//
// A configuration is built in layers, each overriding the one before it, and is then validated
// as a whole, all before the daemon starts any goroutine:
//
//	Default() → YAML file → STOREEDGE_* environment → --set key=value flags → Validate()
//
// Load does all of that in one call. Every key has a dotted name ("cloud.page_size"); the same
// name is the YAML path in the file, the environment variable with dots turned to underscores
// and upper-cased (STOREEDGE_CLOUD_PAGE_SIZE), and the left side of a --set flag. Keys lists
// them in the order of the example file, deploy/storeedge.example.yaml, which docs/
// configuration.md documents for shop IT.
//
// Each default is written once, as a Default… constant in this package (defaults.go):
// Default is made of them, and the packages that take a configured value as an option use the
// same constant when the option is zero (feed.Options.PageSize falls back to
// DefaultCloudPageSize). The constants live here rather than in those packages because this
// package is the ground floor, which imports no domain package: it cannot read feed's or
// devices' constants, while all of them may read its. The tests hold the example file and
// docs/configuration.md to Default, key by key, so a default cannot change without both.
//
// Errors name what a person has to change: where the value came from (file and line,
// environment variable, --set), the key, the value as written and the reason, e.g.
//
//	/etc/storeedge/storeedge.yaml:12: cloud.page_size: "ten": want a whole number
//	lan.services.catalog: 80: same port as lan.front_door
//
// Secrets (the store key, a proxy password, the Service Bus connection string, the webhook
// secret, the log intake's key) have their own types, Secret and Proxy, which print, marshal and log as "xxxxx".
// They never appear in an error message or in Redacted.
package config
