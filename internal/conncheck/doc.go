// Package conncheck finds, without blocking, an idle keep-alive client
// connection that its server has closed, before a request is written
// into it: a request written into that race may be lost after the server
// read it. ilp_proxy's HTTP/1.1 client and the asynchronous replies'
// sender (package async) check each pooled connection with it before
// reuse.
package conncheck
