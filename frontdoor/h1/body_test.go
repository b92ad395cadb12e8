package h1

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// onHead refuses a request with X-Refuse on its head (401, its body
// unread), and echoes the others, their body read, as echo does; it
// records whether the last request's body was pending and what reading
// it returned.
type onHead struct {
	mu      sync.Mutex
	pending bool
	err     error
}

func (h *onHead) ServeH1(w *ResponseWriter, r *Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending, h.err = r.BodyPending(), nil
	if _, ok := r.Lookup("X-Refuse"); ok {
		w.SetStatus(401)
		w.AddField("WWW-Authenticate", "Bearer")
		return
	}
	body, err := r.ReadBody()
	if h.err = err; err != nil {
		return
	}
	w.Write(r.Method)
	w.WriteString(" ")
	w.Write(r.Target)
	w.WriteString(" ")
	w.Write(body)
	if string(body) != string(r.Body) {
		panic("ReadBody and Body disagree")
	}
}

// last returns what the last request's handler recorded.
func (h *onHead) last() (pending bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending, h.err
}

// TestHandleOnHeadRefusal: a handler called on the head that answers
// without the body gets its answer out at once, with no 100 Continue
// before it and Connection: close; what the client sends after, the
// body, is never read as a request: the connection is closed.
func TestHandleOnHeadRefusal(t *testing.T) {
	h := &onHead{}
	addr := startServer(t, &Server{Handler: h, HandleOnHead: true})
	for _, head := range []string{
		"POST /r HTTP/1.1\r\nHost: a\r\nX-Refuse: 1\r\nContent-Length: 90\r\n\r\n",
		"POST /r HTTP/1.1\r\nHost: a\r\nX-Refuse: 1\r\nExpect: 100-continue\r\nContent-Length: 90\r\n\r\n",
	} {
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(2 * time.Second)) // the body timeout is 10 s
		br := bufio.NewReader(c)
		io.WriteString(c, head)
		resp, body, err := readAnswer(br)
		if pending, _ := h.last(); err != nil || resp.StatusCode != 401 || !resp.Close || body != "" || !pending {
			t.Fatalf("%q: %v %v %q, pending %v; want 401 with Connection: close, on the head", head, resp, err, body, pending)
		}
		io.WriteString(c, getA) // where the body was to be
		if !closed(br) {
			t.Fatalf("%q: connection not closed after the refusal", head)
		}
	}
}

// TestHandleOnHeadRead: a handler called on the head reads the body; 100
// Continue goes out only then; the connection serves on. A body that
// arrived with its head is given whole, as without HandleOnHead.
func TestHandleOnHeadRead(t *testing.T) {
	h := &onHead{}
	client, _, _ := servePipe(t, &Server{Handler: h, HandleOnHead: true}, nil)
	br := bufio.NewReader(client)
	go io.WriteString(client, "POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	br.ReadString('\n')
	go io.WriteString(client, "hello")
	resp, got, err := readAnswer(br)
	if pending, _ := h.last(); err != nil || resp.StatusCode != 200 || resp.Close || got != "POST /c hello" || !pending {
		t.Fatalf("%v %v %q, pending %v", resp, err, got, pending)
	}

	// The body in several reads, larger than the small read buffer: the
	// head moves to the big one before the handler sees its slices.
	body := strings.Repeat("y", 6000)
	go func() {
		io.WriteString(client, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 6000\r\n\r\n")
		for i := 0; i < len(body); i += 500 {
			io.WriteString(client, body[i:i+500])
		}
	}()
	if _, got, err := readAnswer(br); err != nil || got != "POST /big "+body {
		t.Fatalf("%v, %d bytes", err, len(got))
	}

	go io.WriteString(client, "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
	_, got, err = readAnswer(br)
	if pending, _ := h.last(); err != nil || got != "POST /w hi" || pending {
		t.Fatalf("%v %q, pending %v; want the body whole", err, got, pending)
	}
}

// TestHandleOnHeadBodyTimeout: a body that does not arrive within
// BodyTimeout fails ReadBody, and the connection is closed without the
// handler's answer.
func TestHandleOnHeadBodyTimeout(t *testing.T) {
	h := &onHead{}
	addr := startServer(t, &Server{Handler: h, HandleOnHead: true, BodyTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("got %d bytes, %v; want the connection closed", n, err)
	}
	if _, err := h.last(); err == nil {
		t.Fatal("ReadBody did not fail")
	}
}
