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
// data sources for a tenant's picker. Listing creates no sub-account: a
// tenant's sub-account is created on its first start.
func Example() {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	emu, srv := cdatatest.NewServer(cdatatest.Options{AccountID: "oem-1", PublicKey: &key.PublicKey,
		Sources: []string{"Salesforce", "Snowflake"}, SourcesWithoutSub: true})
	defer srv.Close()

	p, err := cdata.New(cdata.Config{BaseURL: srv.URL + "/api", AccountID: "oem-1", PrivateKey: key})
	if err != nil {
		fmt.Println(err)
		return
	}
	sources, err := p.Sources(context.Background(), "acme")
	if err != nil {
		// CData may refuse the list without a sub-account: start flows
		// without a data source, and CData's page offers its picker.
		sources = nil
	}
	fmt.Println(sources)
	fmt.Println("sub-accounts:", len(emu.Accounts()))
	// Output:
	// [Salesforce Snowflake]
	// sub-accounts: 0
}
