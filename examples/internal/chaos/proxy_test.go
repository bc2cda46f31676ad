package chaos

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echo serves connections that write back each line they read.
func echo(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) (string, error) {
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	return r.ReadString('\n')
}

func TestProxyForwardsCutsAndStalls(t *testing.T) {
	p, err := Listen(echo(t))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	c, r := dial(t, p)
	line, err := roundTrip(c, r, time.Second)
	require.NoError(t, err)
	require.Equal(t, "ping\n", line, "forwards both ways")

	// A stall holds the connection open and what was sent, until Resume.
	p.Stall()
	_, err = roundTrip(c, r, 200*time.Millisecond)
	require.True(t, timedOut(err), "nothing comes back during a stall: %v", err)
	late, lateR := dial(t, p) // new connections are held too
	_, err = roundTrip(late, lateR, 200*time.Millisecond)
	require.True(t, timedOut(err), "a new connection is held too: %v", err)
	p.Resume()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ping\n", line, "what the stall held arrives after Resume")

	// A cut closes every connection; new ones work.
	require.Equal(t, 2, p.Cut())
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF, "the cut connection is closed")
	c2, r2 := dial(t, p)
	line, err = roundTrip(c2, r2, time.Second)
	require.NoError(t, err)
	require.Equal(t, "ping\n", line)

	cut, stalls := p.Stats()
	require.Equal(t, 2, cut)
	require.Equal(t, 1, stalls)
}

func timedOut(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
