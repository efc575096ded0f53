package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// checkBlob lists (at most) one blob of the media container with the Azure SDK's container
// client over the WAN dialer's transport: the container URL and its SAS work from here. The
// container URL is the one the cloud's remote configuration gives (media.container_url);
// when the media service lands, this check uses its client instead.
func checkBlob(ctx context.Context, hc *http.Client, containerURL string) Result {
	check := "blob container " + redactSAS(containerURL)
	c, err := container.NewClientWithNoCredential(containerURL, &container.ClientOptions{ClientOptions: policy.ClientOptions{
		Transport: hc,
		Retry:     policy.RetryOptions{MaxRetries: -1}, // one attempt: doctor reports, it does not wait
	}})
	if err != nil {
		return fail("wan", check, err.Error(), "the cloud's media.container_url is not a container URL: call the vendor's support")
	}
	one := int32(1)
	page, err := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: &one}).NextPage(ctx)
	if err != nil {
		return fail("wan", check, "the container cannot be read: "+shortBlobError(err), blobFix(err))
	}
	n := 0
	if page.Segment != nil {
		n = len(page.Segment.BlobItems)
	}
	return pass("wan", check, fmt.Sprintf("readable (listed %d blob)", n))
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

// redactSAS drops the query (the signature) of a container URL for display.
func redactSAS(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unreadable URL)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
