package mediabench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/tools/testenv"
)

// BenchmarkAzuriteGet measures what one GET of a 20 KiB blob costs Azurite's CPU, in a
// container of 200 blobs and in one of 10,000 (the media-fetch container holds about 10,500),
// with the container's SAS (as the daemon asks) and with the account's shared key (as rclone
// asks). It explains the prefetch figures of docs/PERFORMANCE.md, where Azurite's CPU bounds
// both programs:
//
//	go test -run '^$' -bench AzuriteGet -benchtime 4000x ./bench/mediabench
func BenchmarkAzuriteGet(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads Azurite's CPU time from /proc")
	}
	ctx := context.Background()
	for _, blobs := range []int{200, 10000} {
		az := testenv.StartAzurite(b, testenv.AzuriteOptions{})
		pid := azuritePid(b, az.Addr)
		key, withSAS := azuriteContainers(b, ctx, az, blobs)
		b.Run(fmt.Sprintf("blobs=%d", blobs), func(b *testing.B) {
			clients := [2]*container.Client{withSAS, key}
			get := func(cc *container.Client, i int) {
				r, err := cc.NewBlobClient(blobName(i%blobs)).DownloadStream(ctx, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			// Four downloads at a time, as the bench's, in runs of 500 that take turns between
			// the two credentials: Azurite's JIT and heap warm up over the first thousands of
			// requests, which would favour whichever came second.
			run := func(cc *container.Client, from, n int) {
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Go(func() {
						for i := from + g; i < from+n; i += 4 {
							get(cc, i)
						}
					})
				}
				wg.Wait()
			}
			run(withSAS, 0, 500)
			run(key, 500, 500)
			var cpu [2]time.Duration
			var gets [2]int
			b.ResetTimer()
			for done, turn := 0, 0; done < b.N; turn++ {
				n := min(500, b.N-done)
				c0, err := harness.ProcCPU(pid)
				if err != nil {
					b.Fatal(err)
				}
				run(clients[turn%2], done, n)
				c1, err := harness.ProcCPU(pid)
				if err != nil {
					b.Fatal(err)
				}
				cpu[turn%2] += c1 - c0
				gets[turn%2] += n
				done += n
			}
			for i, name := range []string{"sas", "shared-key"} {
				if gets[i] > 0 {
					b.ReportMetric(float64(cpu[i].Microseconds())/1e3/float64(gets[i]), "azurite-ms/GET-"+name)
				}
			}
		})
	}
}

func blobName(i int) string { return "media/" + strconv.Itoa(i) + ".jpg" }

// azuriteContainers fills a container with blobs of 20 KiB and returns a client of it with the
// shared key and one with a read SAS.
func azuriteContainers(b *testing.B, ctx context.Context, az *testenv.Azurite, blobs int) (key, withSAS *container.Client) {
	svc, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateContainer(ctx, "shop", nil); err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte{'x'}, 20<<10)
	var wg sync.WaitGroup
	var failed atomic.Value
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < blobs; i += 8 {
				if _, err := svc.UploadBuffer(ctx, "shop", blobName(i), body, nil); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	cred, err := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	if err != nil {
		b.Fatal(err)
	}
	q, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour),
		ContainerName: "shop", Permissions: (&sas.ContainerPermissions{Read: true}).String()}.SignWithSharedKey(cred)
	if err != nil {
		b.Fatal(err)
	}
	if withSAS, err = container.NewClientWithNoCredential(az.BlobURL+"/shop?"+q.Encode(), nil); err != nil {
		b.Fatal(err)
	}
	return svc.ServiceClient().NewContainerClient("shop"), withSAS
}

// azuritePid finds the emulator listening on addr among the processes.
func azuritePid(b *testing.B, addr string) int {
	want := []byte("--blobPort\x00" + addr[strings.LastIndexByte(addr, ':')+1:] + "\x00")
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		if line, err := os.ReadFile(f); err == nil && bytes.Contains(line, want) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			return pid
		}
	}
	b.Fatalf("no Azurite process listens on %s", addr)
	return 0
}
