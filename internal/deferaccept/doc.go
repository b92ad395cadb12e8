// Package deferaccept has a listening socket hand out a connection only
// once the client has sent its first bytes. Every ILP peer speaks first
// (its request, or its TLS ClientHello), so waiting costs it nothing,
// and a server woken for a new connection finds its request there: one
// wake-up per connection instead of two (the accept, then the first
// read), and for package sharedtcp, a connection handed to a config
// with its request ready to read.
package deferaccept
