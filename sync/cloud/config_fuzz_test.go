package cloud

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// FuzzRemoteConfig feeds arbitrary answers to GET /v1/config through the client's decoding and
// the two values storeedge takes from it (cloud-api.md): never a panic; a queue or a container URL
// is given only when it keeps its rule, or refused with a bounded reason; and the refusal of a
// container URL never quotes its SAS token.
func FuzzRemoteConfig(f *testing.F) {
	for _, s := range []string{
		`{"store_id":"lyon-01","servicebus":{"queue":"orders/lyon-01"},"media":{"container_url":"https://acct.blob.core.windows.net/media?sv=2024&sig=SECRETSIG"}}`,
		`{"store_id":42,"servicebus":{"queue":42},"media":{"container_url":["x"]}}`,
		`{"servicebus":{"queue":"a//b"},"media":{"container_url":"http://acct.blob.core.windows.net/media?sig=SECRETSIG"}}`,
		`{"servicebus":null,"media":null,"flags":{"x":1}}`,
		`{"media":{"container_url":"https://acct.blob.core.windows.net/?sig=SECRETSIG"}}`,
		`[]`,
		`{"media":{"container_url":"https://acct.blob.core.windows.net/?container"}}`,
		`{"media":{"container_url":"not a url sig=ab%2Bcd%2Fef%3D&se=1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rc cloudapi.RemoteConfig
		if decodeAnswer(bytes.NewReader(data), maxConfigAnswer, &rc) != nil {
			return // a broken answer: the configuration is asked again later
		}
		if q, err := RemoteQueue(rc); err != nil {
			if q != "" || len(err.Error()) > 1024 {
				t.Fatalf("queue %q given with an error, or a reason of %d bytes", q, len(err.Error()))
			}
		}
		u, err := RemoteContainerURL(rc)
		if err == nil {
			return
		}
		if u != "" || len(err.Error()) > 1024 {
			t.Fatalf("container URL given with an error, or a reason of %d bytes", len(err.Error()))
		}
		// The signature is the secret: a refusal must not quote it, as written or decoded (the
		// rest of the query may match the refusal's own words). Read from the text itself, so
		// also when it is no URL at all.
		given := rc.Media.ContainerURL
		for rest := given; ; {
			i := strings.Index(rest, "sig=")
			if i < 0 {
				break
			}
			raw, _, _ := strings.Cut(rest[i+len("sig="):], "&")
			rest = rest[i+len("sig="):]
			dec, _ := url.QueryUnescape(raw) // "" when it does not decode
			for _, sig := range []string{raw, dec} {
				if len(sig) >= 8 && strings.Contains(err.Error(), sig) {
					t.Fatalf("the refusal quotes the SAS signature: %v", err)
				}
			}
		}
	})
}
