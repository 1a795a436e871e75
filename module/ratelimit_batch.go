package outergate

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// limitBatch coalesces the Redis limiter's calls of concurrent requests on
// this instance into one pipeline: while one pipeline is in flight, the
// requests that arrive queue their scripts, and the next pipeline carries
// them all. Each request's scripts still run on their own in Redis, each
// one atomic, so the counts are those of one round trip per request, exact
// across instances; what is shared is the write, the read and the
// connection (the syscalls were most of the limiter's CPU). A request
// alone is sent at once: there is no timer and no added wait when the
// instance is quiet.
//
// There is no goroutine of its own: the first request to find no pipeline
// in flight sends one, and hands the next one (if requests queued
// meanwhile) to the first of them. A request waits at most for the
// pipeline in flight and its own, each bounded by the store's timeout.
type limitBatch struct {
	client  redis.UniversalClient
	timeout time.Duration

	mu      sync.Mutex
	queue   []*limitCall
	sending bool // a pipeline is in flight or about to be
}

// limitCall is one request's part of a pipeline: send queues its commands
// on the pipeline; wake tells it that they ran (false) or that it is to
// send the next pipeline (true).
type limitCall struct {
	send func(redis.Pipeliner)
	wake chan bool
}

// maxLimitBatch bounds the commands of one pipeline's requests.
const maxLimitBatch = 128

func newLimitBatch(client redis.UniversalClient, timeout time.Duration) *limitBatch {
	return &limitBatch{client: client, timeout: timeout}
}

// run sends send's commands in the next pipeline and returns once they
// ran; their replies and errors are in the commands send queued. ctx
// bounds the pipeline when it carries this request alone.
func (b *limitBatch) run(ctx context.Context, send func(redis.Pipeliner)) {
	c := &limitCall{send: send, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := !b.sending
	b.sending = true
	b.mu.Unlock()
	if !lead && !<-c.wake {
		return // sent by another request's pipeline
	}
	b.flush(ctx, c)
}

// flush sends the queued requests (at most maxLimitBatch) in one pipeline,
// wakes them, and hands the next pipeline to the first request still
// queued, if any. self is the request sending it, and ctx its context.
func (b *limitBatch) flush(ctx context.Context, self *limitCall) {
	b.mu.Lock()
	n := min(len(b.queue), maxLimitBatch)
	batch := make([]*limitCall, n)
	copy(batch, b.queue)
	b.queue = append(b.queue[:0], b.queue[n:]...)
	b.mu.Unlock()
	defer b.done(batch) // also if a command panics: no request waits forever

	if len(batch) > 1 || batch[0] != self {
		// The pipeline is every request's: no one request's cancellation
		// may fail the others.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), b.timeout)
		defer cancel()
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.send(pipe)
	}
	_, _ = pipe.Exec(ctx) // each command keeps its own error
}

// done wakes the requests of a pipeline that ran and hands the next one to
// the first request queued meanwhile.
func (b *limitBatch) done(batch []*limitCall) {
	b.mu.Lock()
	var next *limitCall
	if len(b.queue) > 0 {
		next = b.queue[0]
	} else {
		b.sending = false
	}
	b.mu.Unlock()
	for _, c := range batch {
		c.wake <- false
	}
	if next != nil {
		next.wake <- true
	}
}
