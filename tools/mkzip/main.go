// Command mkzip writes a zip archive of files, each under the name given after "=": mkzip
// OUT.zip storeedge/storeedge.exe=dist/storeedge.exe ... The files keep their modification
// times, so a rebuild from the same sources gives the same archive.
package main

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: mkzip OUT.zip NAME=FILE ...")
	}
	out, err := os.Create(args[0])
	if err != nil {
		return err
	}
	zw := zip.NewWriter(out)
	for _, a := range args[1:] {
		name, file, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want NAME=FILE", a)
		}
		if err := add(zw, name, file); err != nil {
			return err
		}
	}
	return errorsJoin(zw.Close(), out.Close())
}

func add(zw *zip.Writer, name, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(fi)
	if err != nil {
		return err
	}
	h.Name, h.Method = name, zip.Deflate
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
