package media_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a Fetcher starts ends with Run. The HTTP client's idle connections to Azurite
// are the client's, not the Fetcher's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}
