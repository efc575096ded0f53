package media

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/storeedge/storeedge/internal/config"
)

// OwnLocator is where the shop's own container is, from media.container_url or
// media.connection_string with media.container; own is false when neither is set and the
// cloud's remote configuration names the container. The daemon and doctor both read the
// configuration through it, so they reach the same container.
func OwnLocator(m config.Media) (loc Locator, source string, own bool) {
	switch {
	case m.ContainerURL != "":
		return Locator{URL: m.ContainerURL.Reveal()}, "media.container_url", true
	case m.ConnectionString != "":
		return Locator{ConnectionString: m.ConnectionString.Reveal(), Container: m.Container}, "media.connection_string", true
	}
	return Locator{}, "", false
}

// Display is the container's address without any secret (no SAS, no account key), for checks
// and messages.
func (l Locator) Display() string {
	ep, err := l.Endpoint()
	if err != nil {
		return "(unreadable container address)"
	}
	if l.URL != "" {
		return ep
	}
	return strings.TrimSuffix(ep, "/") + "/" + l.Container
}

// Endpoint is the URL of the container (URL) or of the account's Blob service (connection
// string), without its query: what a check dials.
func (l Locator) Endpoint() (string, error) {
	raw := l.URL
	if raw == "" {
		var err error
		if raw, err = blobEndpoint(l.ConnectionString); err != nil {
			return "", err
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", errors.New("media: the container address is not a URL with a host")
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String(), nil
}

// blobEndpoint reads a storage connection string's Blob endpoint: BlobEndpoint, else
// https://<AccountName>.blob.<EndpointSuffix>.
func blobEndpoint(cs string) (string, error) {
	fields := map[string]string{}
	for part := range strings.SplitSeq(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok {
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if ep := fields["blobendpoint"]; ep != "" {
		return ep, nil
	}
	account, suffix := fields["accountname"], fields["endpointsuffix"]
	if account == "" {
		return "", errors.New("media.connection_string names neither BlobEndpoint nor AccountName")
	}
	if suffix == "" {
		suffix = "core.windows.net"
	}
	scheme := fields["defaultendpointsprotocol"]
	if scheme == "" {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s.blob.%s", scheme, account, suffix), nil
}

// Check lists at most one blob of the container, with the credential in use: the container is
// there and readable from here. It returns how many blobs it listed (0 or 1). Its error is the
// SDK's own (an *azcore.ResponseError carries the store's error code) so that a diagnosis can
// tell an expired signature from a missing permission; its text may hold the request, SAS
// included, so show only its code.
func (c *Container) Check(ctx context.Context) (int, error) {
	cl, err := c.current(ctx)
	if err != nil {
		return 0, err
	}
	one := int32(1)
	page, err := cl.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: &one}).NextPage(ctx)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			return 0, err
		}
		return 0, classify(err)
	}
	if page.Segment == nil {
		return 0, nil
	}
	return len(page.Segment.BlobItems), nil
}
