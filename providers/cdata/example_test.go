package cdata_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
)

// Build the provider against the emulator (in production: your parent
// account id and PrivateKeyFile, and the default BaseURL), and list the
// data sources for a tenant's picker. The tenant's sub-account is created
// on first use.
func Example() {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	emu, srv := cdatatest.NewServer(cdatatest.Options{AccountID: "oem-1", PublicKey: &key.PublicKey,
		Sources: []string{"Salesforce", "Snowflake"}})
	defer srv.Close()

	p, err := cdata.New(cdata.Config{BaseURL: srv.URL + "/api", AccountID: "oem-1", PrivateKey: key})
	if err != nil {
		fmt.Println(err)
		return
	}
	sources, err := p.Sources(context.Background(), "acme")
	fmt.Println(sources, err)
	_, created := emu.Account("acme")
	fmt.Println("sub-account for acme:", created)
	// Output:
	// [Salesforce Snowflake] <nil>
	// sub-account for acme: true
}
