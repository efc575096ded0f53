package doctor

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/storeedge/storeedge/tools/testenv"
)

// makeMediaContainer makes the container "media" with one blob in Azurite and returns its URL with
// a read and list signature, as the cloud hands it out.
func makeMediaContainer(t *testing.T, ca *testenv.CA, account string) string {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	client, err := azblob.NewClientWithSharedKeyCredential(account+"/", cred, &azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: hc}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.CreateContainer(ctx, "media", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.UploadBuffer(ctx, "media", "logo.png", []byte("png"), nil); err != nil {
		t.Fatal(err)
	}
	return containerSAS(t, account, sas.ContainerPermissions{Read: true, List: true})
}

// containerSAS is the URL of the container "media" in Azurite with a signature giving perms.
func containerSAS(t *testing.T, account string, perms sas.ContainerPermissions) string {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPS,
		StartTime:     time.Now().Add(-time.Hour).UTC(),
		ExpiryTime:    time.Now().Add(time.Hour).UTC(),
		Permissions:   perms.String(),
		ContainerName: "media",
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(account, "/") + "/media?" + q.Encode()
}
