package onboard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instrumentation is the name onboard's meter and tracer carry.
const instrumentation = "github.com/onboardkit/onboard"

// telemetry records onboard's metrics and traces through the providers
// of Config.MeterProvider and Config.TracerProvider; with neither set it
// records nothing (OpenTelemetry's no-op providers), and it never uses the
// global providers.
type telemetry struct {
	metrics     bool // a MeterProvider was set
	traces      bool // a TracerProvider was set
	tracer      trace.Tracer
	started     metric.Int64Counter     // flows started, by provider
	completed   metric.Int64Counter     // flows completed, by provider and outcome
	refused     metric.Int64Counter     // requests refused, by error kind
	providerDur metric.Float64Histogram // provider calls, by provider, operation and result
	storeDur    metric.Float64Histogram // store calls, by operation and result
}

func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) (*telemetry, error) {
	t := &telemetry{metrics: mp != nil, traces: tp != nil}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	m := mp.Meter(instrumentation)
	t.tracer = tp.Tracer(instrumentation)
	var err error
	counters := []struct {
		c          *metric.Int64Counter
		name, desc string
	}{
		{&t.started, "onboard.flows.started", "Flows started: the provider was asked for its hosted page."},
		{&t.completed, "onboard.flows.completed", "Flows completed, by outcome."},
		{&t.refused, "onboard.requests.refused", "Requests refused or failed, by error kind."},
	}
	for _, c := range counters {
		if *c.c, err = m.Int64Counter(c.name, metric.WithDescription(c.desc), metric.WithUnit("{request}")); err != nil {
			return nil, err
		}
	}
	histograms := []struct {
		h          *metric.Float64Histogram
		name, desc string
	}{
		{&t.providerDur, "onboard.provider.duration", "Duration of provider API operations, retries included."},
		{&t.storeDur, "onboard.store.duration", "Duration of Store calls."},
	}
	for _, h := range histograms {
		if *h.h, err = m.Float64Histogram(h.name, metric.WithDescription(h.desc), metric.WithUnit("s")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func resultAttr(err error) attribute.KeyValue {
	if err != nil {
		return attribute.String("result", "error")
	}
	return attribute.String("result", "ok")
}

// provider starts the span and the clock of one provider operation; the
// returned func ends both with the operation's error.
func (t *telemetry) provider(ctx context.Context, provider, op string) (context.Context, func(error)) {
	if !t.metrics && !t.traces {
		return ctx, func(error) {}
	}
	attrs := []attribute.KeyValue{attribute.String("provider", provider), attribute.String("operation", op)}
	ctx, span := t.tracer.Start(ctx, "onboard.provider."+op, trace.WithAttributes(attrs...),
		trace.WithSpanKind(trace.SpanKindClient))
	t0 := time.Now()
	return ctx, func(err error) {
		t.providerDur.Record(ctx, time.Since(t0).Seconds(), metric.WithAttributes(append(attrs, resultAttr(err))...))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, kindCode(err))
		}
		span.End()
	}
}

// refusal counts a refused request.
func (t *telemetry) refusal(ctx context.Context, err error) {
	if t.metrics {
		t.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kindCode(err))))
	}
}

// flow counts a started or completed flow.
func (t *telemetry) flow(ctx context.Context, c metric.Int64Counter, provider string, outcome State) {
	if !t.metrics {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("provider", provider)}
	if outcome != "" {
		attrs = append(attrs, attribute.String("outcome", string(outcome)))
	}
	c.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// store times one Store call.
func (t *telemetry) store(ctx context.Context, op string, t0 time.Time, err error) {
	t.storeDur.Record(ctx, time.Since(t0).Seconds(), metric.WithAttributes(attribute.String("operation", op), resultAttr(err)))
}

// timedStore is a Store whose every call is timed.
type timedStore struct {
	s Store
	t *telemetry
}

func timed[T any](ctx context.Context, t *telemetry, op string, fn func() (T, error)) (T, error) {
	t0 := time.Now()
	v, err := fn()
	t.store(ctx, op, t0, err)
	return v, err
}

func timed2[T any](ctx context.Context, t *telemetry, op string, fn func() (T, bool, error)) (T, bool, error) {
	t0 := time.Now()
	v, found, err := fn()
	t.store(ctx, op, t0, err)
	return v, found, err
}

func timedErr(ctx context.Context, t *telemetry, op string, fn func() error) error {
	t0 := time.Now()
	err := fn()
	t.store(ctx, op, t0, err)
	return err
}

func (s timedStore) CreateFlow(ctx context.Context, f Flow, lim Limits) error {
	return timedErr(ctx, s.t, "CreateFlow", func() error { return s.s.CreateFlow(ctx, f, lim) })
}

func (s timedStore) Flow(ctx context.Context, id string) (Flow, bool, error) {
	return timed2(ctx, s.t, "Flow", func() (Flow, bool, error) { return s.s.Flow(ctx, id) })
}

func (s timedStore) Flows(ctx context.Context, q FlowQuery) ([]Flow, error) {
	return timed(ctx, s.t, "Flows", func() ([]Flow, error) { return s.s.Flows(ctx, q) })
}

func (s timedStore) CompleteFlow(ctx context.Context, id string, c Connection, cleanup bool) error {
	return timedErr(ctx, s.t, "CompleteFlow", func() error { return s.s.CompleteFlow(ctx, id, c, cleanup) })
}

func (s timedStore) SetCleanup(ctx context.Context, id string, cleanup bool) error {
	return timedErr(ctx, s.t, "SetCleanup", func() error { return s.s.SetCleanup(ctx, id, cleanup) })
}

func (s timedStore) Prune(ctx context.Context, t time.Time) (int, error) {
	return timed(ctx, s.t, "Prune", func() (int, error) { return s.s.Prune(ctx, t) })
}

func (s timedStore) SaveConnection(ctx context.Context, c Connection) error {
	return timedErr(ctx, s.t, "SaveConnection", func() error { return s.s.SaveConnection(ctx, c) })
}

func (s timedStore) SwapConnection(ctx context.Context, old, c Connection) (bool, error) {
	return timed(ctx, s.t, "SwapConnection", func() (bool, error) { return s.s.SwapConnection(ctx, old, c) })
}

func (s timedStore) FindConnection(ctx context.Context, provider, id string) (Connection, bool, error) {
	return timed2(ctx, s.t, "FindConnection", func() (Connection, bool, error) { return s.s.FindConnection(ctx, provider, id) })
}

func (s timedStore) Connections(ctx context.Context, q ConnectionQuery) ([]Connection, error) {
	return timed(ctx, s.t, "Connections", func() ([]Connection, error) { return s.s.Connections(ctx, q) })
}

func (s timedStore) DeleteConnection(ctx context.Context, provider, id string) (bool, error) {
	return timed(ctx, s.t, "DeleteConnection", func() (bool, error) { return s.s.DeleteConnection(ctx, provider, id) })
}
