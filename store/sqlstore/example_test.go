package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// Open SQLite (in memory here; a file or PostgreSQL in production), size
// the pool, apply the schema and use the store.
func Example() {
	db, err := sql.Open("sqlite", "file:example?mode=memory&cache=shared&_pragma=busy_timeout(10000)")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	fmt.Println(store.Migrate(ctx))
	now := time.Now()
	err = store.SaveConnection(ctx, onboard.Connection{Provider: "cdata", ID: "c1", Owner: onboard.Owner{Tenant: "acme", User: "alice"},
		Name: "CRM", Source: "Salesforce", State: onboard.Connected, CreatedAt: now, UpdatedAt: now})
	fmt.Println(err)
	cs, _ := store.Connections(ctx, onboard.ConnectionQuery{Tenant: "acme", Limit: 20})
	fmt.Println(len(cs), cs[0].Name, cs[0].State)
	// Output:
	// <nil>
	// <nil>
	// 1 CRM connected
}
