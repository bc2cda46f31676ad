// Package readmecheck_test compiles every Go snippet of the repository's
// README, so that what a new user copies builds as written and drops no
// error.
package readmecheck_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// imports maps the package names the snippets use to their paths.
var imports = map[string]string{
	"scs":          "github.com/alexedwards/scs/v2",
	"chi":          "github.com/go-chi/chi/v5",
	"onboard":      "github.com/onboardkit/onboard",
	"middleware":   "github.com/onboardkit/onboard/middleware",
	"cdata":        "github.com/onboardkit/onboard/providers/cdata",
	"fivetran":     "github.com/onboardkit/onboard/providers/fivetran",
	"emulate":      "github.com/onboardkit/onboard/providers/emulate",
	"cdatatest":    "github.com/onboardkit/onboard/providers/cdata/cdatatest",
	"fivetrantest": "github.com/onboardkit/onboard/providers/fivetran/fivetrantest",
	"rsa":          "crypto/rsa",
	"rand":         "crypto/rand",
	"onboardtest":  "github.com/onboardkit/onboard/onboardtest",
	"errors":       "errors",
	"fmt":          "fmt",
	"http":         "net/http",
	"url":          "net/url",
	"testing":      "testing",
	"time":         "time",
}

// placeholders are what the snippets take as given: the app's own values.
const placeholders = `package readmecheck

import (
	"context"
	"net/http"

	"github.com/alexedwards/scs/v2"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/onboardkit/onboard"
)

var (
	ctx                             context.Context
	cdataProvider, fivetranProvider onboard.Provider
	providers                       []onboard.Provider
	store                           onboard.Store
	sessions                        onboard.Sessions
	sessionManager                  *scs.SessionManager
	currentOwner                    func(*http.Request) (onboard.Owner, error)
	ob                              *onboard.Onboarder
	key, secret, webhookSecret      string
	meterProvider                   metric.MeterProvider
	tracerProvider                  trace.TracerProvider
	newApp                          func(string, []onboard.Provider) http.Handler
)
`

// given are the placeholders a snippet may itself declare.
var given = []string{"cdataProvider", "fivetranProvider", "ob"}

var snippetRE = regexp.MustCompile("(?s)```go\n(.*?)```")

// file turns snippet n into a Go file: a snippet of declarations stays at
// the top level, statements go in a function that returns an error.
func file(n int, snippet string) string {
	var used []string
	for name, path := range imports {
		if regexp.MustCompile(`\b` + name + `\.`).MatchString(snippet) {
			used = append(used, fmt.Sprintf("%q", path))
		}
	}
	sort.Strings(used)
	body := snippet
	if !strings.HasPrefix(snippet, "func ") {
		// A snippet that declares one of the values the others take as
		// given (cdataProvider, ob) hands it on, as it does in an app.
		var handed []string
		for _, name := range given {
			if regexp.MustCompile(`(^|\n)\s*` + name + `, err :=`).MatchString(snippet) {
				handed = append(handed, "_ = "+name)
			}
		}
		body = fmt.Sprintf("func snippet%d() error {\n%s\n%s\nreturn nil\n}\n", n, snippet, strings.Join(handed, "\n"))
	}
	return fmt.Sprintf("package readmecheck\n\nimport (\n%s\n)\n\n%s", strings.Join(used, "\n"), body)
}

// droppedErrors returns the assignments of err that the next statement
// does not check.
func droppedErrors(t *testing.T, src string) []string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "snippet.go", src, 0)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	mentions := func(n ast.Node) bool {
		found := false
		ast.Inspect(n, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "err" {
				found = true
			}
			return !found
		})
		return found
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		block, ok := n.(*ast.BlockStmt)
		if !ok {
			return true
		}
		for i, st := range block.List {
			as, ok := st.(*ast.AssignStmt)
			if !ok || !assignsErr(as) {
				continue
			}
			var next ast.Stmt
			if i+1 < len(block.List) {
				next = block.List[i+1]
			}
			switch s := next.(type) {
			case *ast.IfStmt:
				if mentions(s.Cond) {
					continue
				}
			case *ast.ReturnStmt, *ast.SwitchStmt:
				if mentions(s) {
					continue
				}
			}
			out = append(out, fset.Position(as.Pos()).String())
		}
		return true
	})
	return out
}

func assignsErr(as *ast.AssignStmt) bool {
	for _, l := range as.Lhs {
		if id, ok := l.(*ast.Ident); ok && id.Name == "err" {
			return true
		}
	}
	return false
}

func TestREADMESnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the README's snippets with the go command")
	}
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	snippets := snippetRE.FindAllStringSubmatch(string(readme), -1)
	if len(snippets) < 8 {
		t.Fatalf("found %d Go snippets in the README, want at least 8", len(snippets))
	}
	dir := t.TempDir()
	pkg, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	pkg = filepath.Join(pkg, "snippets") // a package that exists only in the overlay
	overlay := map[string]string{}
	add := func(name, src string) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay[filepath.Join(pkg, name)] = path
	}
	add("placeholders.go", placeholders)
	for i, m := range snippets {
		src := file(i, m[1])
		add(fmt.Sprintf("snippet%d.go", i), src)
		if dropped := droppedErrors(t, src); len(dropped) > 0 {
			t.Errorf("README snippet %d drops an error (an err assigned but not checked next) at %v:\n%s", i, dropped, m[1])
		}
	}
	ov, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "overlay.json"), ov, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-overlay="+filepath.Join(dir, "overlay.json"), "./snippets")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's snippets do not compile:\n%s", out)
	}
}
