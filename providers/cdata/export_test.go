package cdata

// Names the tests of package cdata_test use.
var (
	ParseReturn          = parseReturn
	ConnectionExternalID = connectionExternalID
	AccountExternalID    = accountExternalID
)

// Return is what ParseReturn reads.
type Return = result

// Token returns the partner JWT for the sub-account.
func (p *Provider) Token(sub string) (string, error) { return p.token(sub) }
