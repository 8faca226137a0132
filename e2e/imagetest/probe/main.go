// Command probe is what the image_test suite's command tests run inside an
// image: it prints where and as whom it runs, then acts on its arguments.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Printf("probe %s/%s uid=%d gid=%d cwd=%s\n", runtime.GOOS, runtime.GOARCH, os.Getuid(), os.Getgid(), wd)
	for _, arg := range os.Args[1:] {
		key, value, _ := strings.Cut(arg, "=")
		switch key {
		case "env":
			fmt.Printf("%s=%s\n", value, os.Getenv(value))
		case "cat":
			text, err := os.ReadFile(value)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			fmt.Print(string(text))
		case "stderr":
			fmt.Fprintln(os.Stderr, value)
		case "exit":
			code, _ := strconv.Atoi(value)
			os.Exit(code)
		}
	}
}
