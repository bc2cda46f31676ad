package fivetran

// Names the tests use.
var (
	ParseReturn     = parseReturn
	ParsePayload    = parsePayload
	VerifySignature = verifySignature
	SchemaName      = schemaName
	Events          = events
	OfSchema        = ofSchema
)

// Listed is a connection as Fivetran lists it.
type Listed = connection

// Accept is the version header every call sends.
const Accept = accept
