package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/media"
)

// mediaContainer is the container the media service reads, as the daemon finds it: the shop's
// own (media.container_url, media.connection_string) or the one the cloud's remote
// configuration names. ok is false when media are off or no container is named; err says why the
// one the cloud names cannot be used.
func mediaContainer(m config.Media, rc cloudapi.RemoteConfig) (loc media.Locator, ok bool, err error) {
	if !m.Enabled {
		return media.Locator{}, false, nil
	}
	loc, _, own := media.OwnLocator(m)
	if !own {
		if loc.URL, err = cloud.RemoteContainerURL(rc); err != nil {
			return loc, false, err
		}
	}
	return loc, loc.URL != "" || loc.ConnectionString != "", nil
}

// checkBlob lists (at most) one blob of the media container with the media service's own
// client over the WAN dialer's transport: the container and its credential work from here.
func checkBlob(ctx context.Context, hc *http.Client, loc media.Locator) Result {
	check := "blob container " + loc.Display()
	n, err := media.NewContainer(loc, hc).Check(ctx)
	if bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch) && sasReads(loc) {
		// A read-only signature (sp=r), which is all the media service needs (cloud-api.md).
		return warn("wan", check, "the signature is accepted but does not allow listing the container (a read-only SAS): reading its blobs was not checked",
			"nothing to do if media downloads work (GET /api/v1/status: media.state ok); otherwise call the vendor's support")
	}
	if err != nil {
		return fail("wan", check, "the container cannot be read: "+shortBlobError(err), blobFix(err))
	}
	return pass("wan", check, fmt.Sprintf("readable (listed %d blob)", n))
}

// sasReads tells whether the container's signature (SAS) may give read rights: its sp= holds r,
// or it has none (the rights are in a stored access policy, si=). The signature is the container
// URL's query, or a connection string's SharedAccessSignature.
func sasReads(loc media.Locator) bool {
	sig := ""
	if loc.URL != "" {
		u, err := url.Parse(loc.URL)
		if err != nil {
			return false
		}
		sig = u.RawQuery
	}
	if s := config.ConnectionStringPart(loc.ConnectionString, "SharedAccessSignature"); s != "" {
		sig = s
	}
	q, err := url.ParseQuery(strings.TrimPrefix(sig, "?"))
	if err != nil {
		return false
	}
	sp, has := q["sp"]
	return !has || strings.Contains(sp[0], "r")
}

func blobFix(err error) string {
	switch {
	case bloberror.HasCode(err, bloberror.AuthenticationFailed):
		return "the container's signature (SAS) is refused: check this machine's clock (see clock skew); if it is right, the SAS has expired: call the vendor's support"
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch, bloberror.AuthorizationResourceTypeMismatch):
		return "the container's signature (SAS) does not allow reading it: call the vendor's support"
	case bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ResourceNotFound):
		return "the container does not exist: call the vendor's support"
	}
	return "if a proxy answers in Blob storage's place, ask the network team to let it through; otherwise call the vendor's support with this line"
}

// shortBlobError says what Blob storage answered, without the SDK's dump of the request (and
// its signature).
func shortBlobError(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	}
	s := err.Error()
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
