// An HTTPS server on Go's own TLS stack (crypto/tls), whose plaintext never passes through OpenSSL:
// vigil cannot read it, and must say so (the coverage gauge's unrecognized_protocol, protocol "tls").
// Usage: https_server --port P --cert C --key K. Binds 127.0.0.1; prints "listening P" once serving.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	port := flag.Int("port", 0, "port to listen on")
	cert := flag.String("cert", "", "certificate (PEM)")
	key := flag.String("key", "", "private key (PEM)")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %d\n", *port)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	err = http.ServeTLS(listener, handler, *cert, *key)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
