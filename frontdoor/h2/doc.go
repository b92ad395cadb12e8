// Package h2 is the server side of HTTP/2 for caddy-ilp's front door,
// outside net/http: frames read and written with x/net's http2.Framer,
// header blocks through its hpack package, nothing else. It is to h2c
// (and to TLS connections that negotiated "h2") what package h1 is to
// HTTP/1.1, with the same shape of API, so that package frontdoor can
// serve both through one adapter: a Handler called once per whole
// request with a Request (pseudo-headers, fields, body) and a
// ResponseWriter (status, fields, body) answered with a content-length;
// or, with Server.HandleOnHead, called on the request's header block
// when its body has yet to arrive, to read the body or refuse the
// request without it.
//
// An ILP peer POSTs a Prepare of at most 40,000 bytes and gets a 200
// whose body is a Fulfill or a Reject. Many such exchanges share a
// connection as concurrent streams; each request's handler runs on its
// own goroutine, and may block while it forwards the packet.
//
// # Files
//
//	server.go    Server: Serve, ServeConn(conn, prefix), Shutdown, Close
//	conn.go      a connection's read loop: preface, one frame at a time, stream and connection errors
//	headers.go   header blocks: decoded fragment by fragment, each field checked, the CONTINUATION bounds
//	stream.go    a stream's states and pooled buffers; the closed streams remembered; the reset budget
//	handlers.go  the goroutines handlers run on, kept from earlier streams
//	write.go     the writing side: one buffer, written by whoever finds no write in progress; flow control
//	response.go  ResponseWriter, and the answer's HEADERS and DATA frames
//	request.go   Request and Field
//	body.go      a request handed over on its head (HandleOnHead): ReadBody, 100 (Continue)
//	chars.go     byte classes for names, values, :path and :authority
//
// # Accepted
//
//   - the 24-byte client preface, then a SETTINGS frame, within
//     ReadTimeout of the connection's start; the server sends its SETTINGS
//     (MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = MaxBodyBytes,
//     MAX_HEADER_LIST_SIZE = MaxHeaderBytes) and a WINDOW_UPDATE opening
//     the connection's window to 1 MiB (or 2 × MaxBodyBytes), and ACKs
//     every SETTINGS it is sent, after applying it (INITIAL_WINDOW_SIZE to
//     the open streams, MAX_FRAME_SIZE, HEADER_TABLE_SIZE to the HPACK
//     encoder);
//   - requests on client streams (odd, increasing identifiers): a header
//     block of :method, :scheme, :path (origin-form, or "*" with OPTIONS),
//     an optional :authority, then lower-case regular fields; a body in
//     DATA frames (padded or not), up to END_STREAM, on HEADERS or DATA or
//     on a trailer block (decoded, checked, dropped);
//   - PING (answered with an ACK), WINDOW_UPDATE, RST_STREAM, GOAWAY (the
//     streams open finish), PRIORITY and PRIORITY_UPDATE (ignored), frames
//     of unknown types (ignored);
//   - with HandleOnHead, a request whose END_STREAM is not among the bytes
//     read with its header block is handed to its handler at once; a
//     client that sent "expect: 100-continue" gets a 100 (Continue)
//     header block when the handler reads the body, unless some of it
//     arrived already, and none when the handler refuses the request.
//
// The answer is HEADERS (:status, content-type if set, content-length,
// date, the fields the handler added), then the body in DATA frames, the
// last with END_STREAM; or HEADERS with END_STREAM alone for an empty
// body. DATA frames never exceed the client's SETTINGS_MAX_FRAME_SIZE nor
// its stream and connection windows: an answer waits for WINDOW_UPDATE,
// at most WriteTimeout, then the connection is closed. A 204 has no
// content-length and no body; a 304 no body.
//
// # Refused
//
// A stream error (RFC 9113 §5.4.2) resets one stream with RST_STREAM and
// leaves the connection open; a connection error (§5.4.1) sends GOAWAY
// with the last stream id taken and the code, then closes the
// connection.
//
//	how                              what
//	closed, no GOAWAY                a preface other than HTTP/2's (§3.4)
//	GOAWAY PROTOCOL_ERROR            a first frame other than SETTINGS; a HEADERS on an even stream, or on
//	                                 a stream below the highest opened and not recently closed; DATA,
//	                                 WINDOW_UPDATE or RST_STREAM on an idle stream; a CONTINUATION
//	                                 without its HEADERS, another frame inside a header block;
//	                                 PUSH_PROMISE; WINDOW_UPDATE 0 on the connection; a SETTINGS value out
//	                                 of range (ENABLE_PUSH, MAX_FRAME_SIZE); frames x/net's Framer refuses
//	                                 (stream 0 where a stream is needed, and back)
//	GOAWAY STREAM_CLOSED             HEADERS on a stream recently closed after its END_STREAM or the
//	                                 client's RST_STREAM; DATA on one closed after its END_STREAM
//	GOAWAY FLOW_CONTROL_ERROR        DATA over the connection's window; a WINDOW_UPDATE taking the
//	                                 connection's window past 2^31-1; INITIAL_WINDOW_SIZE over 2^31-1, or
//	                                 taking a stream's window past it
//	GOAWAY FRAME_SIZE_ERROR          a frame over 16 KiB (the MAX_FRAME_SIZE advertised), one too short for
//	                                 its fields
//	GOAWAY COMPRESSION_ERROR         a header block HPACK cannot decode, a string over MaxHeaderBytes
//	GOAWAY ENHANCE_YOUR_CALM         the mitigations below
//	RST_STREAM PROTOCOL_ERROR        a malformed request (§8.1.1): no :method, :scheme or :path; an empty
//	                                 or non-origin-form :path; an :authority with bytes no host or port
//	                                 has; a pseudo-header unknown (:status, :protocol), repeated, or
//	                                 after a regular field; a field name with upper case or not a token;
//	                                 a value with a control character or whitespace at either end;
//	                                 connection, keep-alive, proxy-connection, transfer-encoding, upgrade,
//	                                 te other than "trailers"; content-length twice or not 1 to 18
//	                                 digits, or other than the DATA received; trailers with a
//	                                 pseudo-header or without END_STREAM; a stream depending on itself
//	                                 (HEADERS or PRIORITY); WINDOW_UPDATE 0 on a stream
//	RST_STREAM STREAM_CLOSED         DATA or HEADERS after END_STREAM, while its handler runs (the answer
//	                                 is dropped); DATA on a stream the client reset
//	RST_STREAM FLOW_CONTROL_ERROR    DATA over the stream's window; a WINDOW_UPDATE taking it past 2^31-1
//	RST_STREAM REFUSED_STREAM        a stream over MaxConcurrentStreams (handlers still running count);
//	                                 a stream above the last one named by a shutdown's GOAWAY
//	405, header-only                 CONNECT
//	413, header-only, RST NO_ERROR   a content-length over MaxBodyBytes, or DATA past it (RST_STREAM
//	                                 NO_ERROR after the answer when the client is still sending, §8.1;
//	                                 its DATA in flight is then ignored)
//	431, header-only                 a decoded header list over MaxHeaderBytes (HPACK's table is kept)
//	answer, RST NO_ERROR             with HandleOnHead, a handler's answer before the client's END_STREAM: a
//	                                 refusal on the head (§8.1; its DATA in flight is then ignored)
//
// Frames on a stream the server reset are ignored (§5.1); DATA on one
// closed long ago gets RST_STREAM STREAM_CLOSED. Whatever is refused, the
// DATA counts against the connection's window, which is given back.
//
// # Mitigations
//
// Rapid reset (CVE-2023-44487): a stream counts against
// MaxConcurrentStreams until its handler returns, even once the client
// has reset it, so that handlers never run more than MaxConcurrentStreams
// at once on a connection. A stream the client resets before its answer,
// and a stream refused for MaxConcurrentStreams, each cost 4 from a
// budget of 4 × MaxConcurrentStreams; an answered stream gives 1 back. A
// client may thus reset a burst of MaxConcurrentStreams streams, then one
// for four it lets finish; past the budget: GOAWAY ENHANCE_YOUR_CALM.
//
// CONTINUATION flood (CVE-2024-27316): a header block is decoded as its
// frames arrive, never buffered; fields past MaxHeaderBytes are decoded
// but not kept (the request is answered 431), HPACK strings are bounded
// by MaxHeaderBytes. A block whose fragments exceed 2 × MaxHeaderBytes,
// or that takes more than (2 × MaxHeaderBytes)/1024 + 16 CONTINUATION
// frames (32 by default), closes the connection: GOAWAY ENHANCE_YOUR_CALM.
// A block must also keep arriving: ReadTimeout between its frames.
//
// Queued frames: a client that sends PINGs, or frames that cost a
// RST_STREAM, and reads nothing, stops the read loop once 256 KiB of
// frames wait to be written, until WriteTimeout closes the connection.
//
// # Timeouts and shutdown
//
// ReadTimeout bounds the preface and first SETTINGS, each frame from its
// first byte, and the wait for the next frame while a request is still
// arriving. IdleTimeout closes a connection with no open stream (pings do
// not keep it open). While handlers run and no request is arriving, no
// read deadline is set: the client has nothing to send. WriteTimeout
// bounds each write.
//
// Shutdown sends GOAWAY NO_ERROR naming the last stream taken; the
// streams up to it are answered, later ones refused; once the last is
// answered, the connection's write side is closed and what the client
// still sends is read for at most a second, so that no answer is lost to
// a reset. Close closes every connection at once. A connection error
// lingers the same way after its GOAWAY.
//
// Handlers are not recovered from panics: a handler that may panic is
// wrapped by the caller. ServeConn returns once the connection is closed
// and every handler it started has returned.
//
// # Cost
//
// A request costs one allocation in the steady state: the HeadersFrame
// x/net's Framer makes for each HEADERS; HPACK's decoder adds one for
// each literal string it has not yet indexed. Its handler runs on a
// goroutine kept from an earlier stream (up to 512 are kept while the
// server has connections), whose stack has already grown to what
// handlers need: a new goroutine's 2 KiB stack, grown by copying for
// every stream, cost the front door a tenth of its CPU under h2c load.
// A stream, its header bytes, its body and its answer come from a pool; the answer's :status, content-length of the last size
// and date of the current second are not formatted again; the frames of
// answers finished while a write is in progress go
// out together in the next write. A connection holds its 4 KiB read
// buffer, the Framer's, and its write buffers while open.
//
// # Tests
//
// Each rule above is tested with raw frames on a loopback connection:
// TestPrefaceSettingsAndRequest (SETTINGS sent and ACKed, a request and
// its answer), TestPrefaceRefused, TestPrefixServedFirst, TestPingAck,
// TestInvalidSettings, TestWindowUpdateZeroIncrement,
// TestWindowUpdateOverflow, TestPriorityAndUnknownFramesIgnored,
// TestStreamIDs (even, decreasing, closed, idle, CONTINUATION alone,
// interrupted block, PUSH_PROMISE), TestDataOnHalfClosedStream,
// TestMalformedRequests, TestContentLengthMismatch, TestTrailers,
// TestBodyTooLarge, TestHeaderListTooLarge, TestFrameTooLarge,
// TestDataOverStreamWindow, TestMaxConcurrentStreams,
// TestAnswerFlowControl, TestWindowNeverOpened, TestIdleTimeout,
// TestReadTimeout, TestHandlersConcurrent, TestCompressionError,
// TestFramesAfterClientReset, TestNoContent; HandleOnHead in
// body_test.go (TestHandleOnHeadRefusal, TestHandleOnHeadContinue,
// TestHandleOnHeadReset: a stream reset while its handler waits for the
// body, which counts until the handler returns, TestRequestBuffered,
// TestHandleOnHeadBodyWhole); the mitigations in
// limits_test.go (TestRapidReset, TestResetNowAndThenTolerated,
// TestContinuationFlood, TestPingsAnsweredInOneWrite); shutdown in
// server_test.go; the handlers' goroutines in handlers_test.go (reused
// across streams and connections, at most 512 kept, none left once the
// last connection closes) and TestAnswersShareWrites (answers ended at
// once share writes); x/net's client in interop_test.go
// (TestGoClient200ConcurrentPOSTs); FuzzServeConn; and
// BenchmarkRoundTrip16Streams (and ...DeepHandler, whose handler needs an
// 8 KiB stack) beside net/http's h2c server.
package h2
