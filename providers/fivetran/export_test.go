package fivetran

// Names the tests use.
var (
	ParseReturn     = parseReturn
	ParsePayload    = parsePayload
	VerifySignature = verifySignature
	SchemaName      = schemaName
	Events          = events
)

// Accept is the version header every call sends.
const Accept = accept
