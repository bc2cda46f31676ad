package onboard_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/onboardkit/onboard"
)

// sums returns the data points of the counter name as "attrs=value".
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Value
			}
		}
	}
	return out
}

func histogramCount(rm metricdata.ResourceMetrics, name string) uint64 {
	var n uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					n += dp.Count
				}
			}
		}
	}
	return n
}

func TestOpenTelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	e := newEnv(t, func(c *onboard.Config) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	})
	b := e.browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(b.start("source=Salesforce"), onboard.Connected)).Code)
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(b.start("source=Salesforce"), onboard.Abandoned)).Code)
	require.Equal(t, http.StatusForbidden, e.browser("eve", "globex").get(b.finish(b.start(""), onboard.Connected)).Code)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Equal(t, map[string]int64{"provider=fake": 3}, sums(t, rm, "onboard.flows.started"))
	require.Equal(t, map[string]int64{
		"outcome=connected,provider=fake": 1,
		"outcome=abandoned,provider=fake": 1,
		"outcome=revoked,provider=fake":   1,
	}, sums(t, rm, "onboard.flows.completed"))
	require.Equal(t, map[string]int64{"kind=flow_was_started_in_another_browser": 1}, sums(t, rm, "onboard.requests.refused"))
	require.NotZero(t, histogramCount(rm, "onboard.provider.duration"))
	require.NotZero(t, histogramCount(rm, "onboard.store.duration"))

	var ops []string
	for _, s := range spans.GetSpans() {
		ops = append(ops, s.Name)
	}
	require.Subset(t, ops, []string{"onboard.provider.Begin", "onboard.provider.Complete", "onboard.provider.Cancel"})
}

// TestNoTelemetryByDefault: with no providers in the Config, nothing is
// recorded, not even through the global providers.
func TestNoTelemetryByDefault(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	mp, tp := otel.GetMeterProvider(), otel.GetTracerProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))
	t.Cleanup(func() { otel.SetMeterProvider(mp); otel.SetTracerProvider(tp) })

	e := newEnv(t)
	b := e.browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(b.start(""), onboard.Connected)).Code)
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Empty(t, rm.ScopeMetrics)
	require.Empty(t, spans.GetSpans())
}
