package fivetran_test

import (
	"context"
	"fmt"

	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// Build the provider against the emulator (in production: your API key
// and secret, and the default BaseURL), find the tenant's group and
// register the webhook that keeps connection states current.
func Example() {
	emu, srv := fivetrantest.NewServer(fivetrantest.Options{APIKey: "key", APISecret: "secret"})
	defer srv.Close()

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
	_, err = p.RegisterWebhook(ctx, "https://app.example.com/connect/fivetran/webhook")
	fmt.Println(err)
	// Output:
	// <nil>
	// group for acme: true
	// <nil>
}
