package fivetran_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// Build the provider against the emulator (in production: your API key
// and secret, and the default BaseURL), find the tenant's group and
// register the webhook that keeps connection states current. Fivetran
// tests the webhook's URL before it registers it, so register it once the
// app serves its webhook route; registering again reuses the webhook.
func Example() {
	emu, srv := fivetrantest.NewServer(fivetrantest.Options{APIKey: "key", APISecret: "secret"})
	defer srv.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})) // the app's webhook route
	defer app.Close()

	p, err := fivetran.New(fivetran.Config{BaseURL: srv.URL, APIKey: "key", APISecret: "secret",
		WebhookSecret: "whsec"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	group, err := p.GroupID(ctx, "acme")
	fmt.Println(err)
	id, _ := emu.GroupByName(fivetran.GroupName("acme"))
	fmt.Println("group for acme:", group == id)
	first, err := p.RegisterWebhook(ctx, app.URL+"/connect/fivetran/webhook")
	fmt.Println(err)
	again, err := p.RegisterWebhook(ctx, app.URL+"/connect/fivetran/webhook")
	fmt.Println(err, first == again, len(emu.Webhooks()))
	// Output:
	// <nil>
	// group for acme: true
	// <nil>
	// <nil> true 1
}
