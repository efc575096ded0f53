package wrk

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// luaSeed starts the scripts that draw random requests. Each thread seeds its own generator from
// its number, so runs are repeatable and threads do not ask for the same sequence.
const luaSeed = `local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(7919 * (tid or 1))
end
`

// WriteIDScript writes DIR/products.lua, asking for random product ids P0000001..P{n}.
func WriteIDScript(dir string, n int) (string, error) {
	path := filepath.Join(dir, "products.lua")
	s := "-- GET /api/v1/catalog/products/{id}, id uniform in P0000001..P" + fmt.Sprintf("%07d", n) + "\n" + luaSeed +
		"function request()\n  return wrk.format(\"GET\", string.format(\"/api/v1/catalog/products/P%07d\", math.random(1, " + strconv.Itoa(n) + ")))\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// ZipfS is the exponent of the skewed workload: a few products asked for most of the time, as
// in a shop where some items sell all day and most rarely.
const ZipfS = 1.1

// WriteZipfScript writes DIR/products-zipf.lua, asking for product ids P0000001..P{n} by a Zipf
// law of exponent ZipfS: the product of rank k with probability proportional to 1/k^s. Ranks are
// scattered over the ids (k*7919 mod n), so the popular products are not neighbours in the
// database or the cache.
func WriteZipfScript(dir string, n int) (string, error) {
	if n%7919 == 0 {
		return "", fmt.Errorf("wrk: zipf script: %d products is a multiple of 7919, which would not scatter the ranks", n)
	}
	path := filepath.Join(dir, "products-zipf.lua")
	s := fmt.Sprintf("-- GET /api/v1/catalog/products/{id}, id by a Zipf law (s = %g) over P0000001..P%07d\n", ZipfS, n) +
		zipfLua(strconv.Itoa(n), "") +
		"function request()\n  return wrk.format(\"GET\", string.format(\"/api/v1/catalog/products/P%07d\", zipfIndex()))\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// zipfLua is the Lua of a Zipf draw over n items: zipfIndex() returns the 1-based index of the
// item drawn, its rank scattered over the items (k*7919 mod n, plus one). n is a Lua expression,
// evaluated in init after load, the Lua that fills what n counts.
func zipfLua(n, load string) string {
	return fmt.Sprintf(`local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n, s = 0, %g
local cdf = {}
function init(args)
  math.randomseed(7919 * (tid or 1))
%s  n = %s
  local sum = 0
  for k = 1, n do sum = sum + 1 / (k ^ s); cdf[k] = sum end
  for k = 1, n do cdf[k] = cdf[k] / sum end
end
function zipfIndex()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return (lo * 7919) %% n + 1
end
`, ZipfS, load, n)
}

// WriteBarcodeScript writes DIR/barcodes.lua, asking for barcodes of the list in codesFile,
// uniformly at random.
func WriteBarcodeScript(dir, codesFile string) (string, error) {
	path := filepath.Join(dir, "barcodes.lua")
	s := "-- GET /api/v1/catalog/barcodes/{code}, code uniform in the list\n" + luaSeed +
		"local codes = {}\nfor line in io.lines(" + strconv.Quote(codesFile) + ") do codes[#codes + 1] = line end\n" +
		"function request()\n  return wrk.format(\"GET\", \"/api/v1/catalog/barcodes/\" .. codes[math.random(1, #codes)])\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// WriteBarcodeZipfScript writes DIR/barcodes-zipf.lua, asking for barcodes of the list in
// codesFile by a Zipf law of exponent ZipfS, the ranks scattered over the list as in
// WriteZipfScript. The list must not hold a multiple of 7919 codes.
func WriteBarcodeZipfScript(dir, codesFile string) (string, error) {
	path := filepath.Join(dir, "barcodes-zipf.lua")
	s := fmt.Sprintf("-- GET /api/v1/catalog/barcodes/{code}, code by a Zipf law (s = %g) over the list\n", ZipfS) +
		"local codes = {}\n" +
		zipfLua("#codes", "  for line in io.lines("+strconv.Quote(codesFile)+") do codes[#codes + 1] = line end\n") +
		"function request()\n  return wrk.format(\"GET\", \"/api/v1/catalog/barcodes/\" .. codes[zipfIndex()])\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// WritePathScript writes DIR/NAME.lua, asking for the path of url again and again.
func WritePathScript(dir, name, url string) (string, error) {
	i := strings.Index(url[len("http://"):], "/") + len("http://")
	path := filepath.Join(dir, name+".lua")
	s := "-- GET " + url[i:] + "\nfunction request()\n  return wrk.format(\"GET\", " + strconv.Quote(url[i:]) + ")\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// WriteLines writes each line followed by a newline to file, e.g. the barcode list of
// WriteBarcodeScript.
func WriteLines(file string, lines []string) error {
	return os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
