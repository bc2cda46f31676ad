// Package chaos is a TCP proxy for the examples' failure tests: it sits
// between the app and its database and, when told, cuts every connection
// or stops forwarding while it holds the connections open, as a network
// that drops or a database that stops answering does.
package chaos

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Proxy forwards the connections it accepts to a target address.
type Proxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	links  map[*link]struct{}
	open   chan struct{} // closed while forwarding; open while stalled
	closed bool
	cut    int
	stalls int
	wg     sync.WaitGroup
}

// link is one proxied connection: the client's and the target's sides.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed when the link is cut
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

// Listen starts a proxy on 127.0.0.1 that forwards to target. Close it
// when done.
func Listen(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{l: l, target: target, links: map[*link]struct{}{}, open: open}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Add(2)
	forward := func(dst, src net.Conn) {
		defer both.Done()
		_, _ = io.Copy(gated{p: p, l: l, w: dst}, src)
		l.close() // one side ended: end the other, as a broken path does
	}
	go forward(s, c)
	go forward(c, s)
	both.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// gated writes only while the proxy forwards: during a stall what was
// read waits here, and the connection stays open.
type gated struct {
	p *Proxy
	l *link
	w io.Writer
}

var errCut = errors.New("chaos: connection cut")

func (g gated) Write(b []byte) (int, error) {
	g.p.mu.Lock()
	open := g.p.open
	g.p.mu.Unlock()
	select {
	case <-open:
	case <-g.l.done:
		return 0, errCut
	}
	return g.w.Write(b)
}

// Cut closes every connection open now, on both sides, and returns how
// many there were. New connections are accepted as before.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.cut += len(links)
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Stall stops forwarding in both directions, on open and new connections
// alike, and holds them open until Resume: the database seems to stop
// answering.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
		p.stalls++
	default: // stalled already
	}
}

// Resume forwards again what a Stall held.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Stats returns how many connections Cut closed and how many stalls
// there were.
func (p *Proxy) Stats() (cut, stalls int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut, p.stalls
}

// Close stops accepting, cuts every connection and waits for the
// forwarding to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.l.Close()
	p.Resume()
	p.Cut()
	p.wg.Wait()
	return err
}
