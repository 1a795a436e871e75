package outergate

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeBatch coalesces the Redis commands of concurrent requests on this
// instance into one pipeline: the limiter's calls (ratelimit_redis.go) and,
// outside a Cluster, the store's writes (redisConn.writeShared). While one
// pipeline is in flight, the requests that arrive queue their scripts, and
// the next pipeline carries them all. Each request's scripts still run on
// their own in Redis, each one atomic, so the counts are those of one
// round trip per request, exact across instances; what is shared is the
// write, the read and the connection (the syscalls were most of the
// limiter's CPU, and of an issuance's). A request alone is sent at once:
// there is no timer and no added wait when the instance is quiet.
//
// There is no goroutine of its own: the first request to find no pipeline
// in flight sends one, and hands the next one (if requests queued
// meanwhile) to the first of them. A request whose context is done by the
// time its pipeline is sent is left out of it (its call fails with the
// context's error), and a shared pipeline runs until the latest deadline
// of the requests in it, at most the store's timeout: so a request waits
// at most for the pipeline in flight and its own, however many are queued
// when Redis stalls (at most 128 go in one pipeline).
type pipeBatch struct {
	client  redis.UniversalClient
	timeout time.Duration
	// tail, if set, adds one command after the requests' (the WAIT of a
	// batch of writes, redisConn.writeShared), whose reply every request
	// of the pipeline shares; it may add none (nil).
	tail func(ctx context.Context, p redis.Pipeliner) *redis.Cmd

	mu      sync.Mutex
	queue   []*pipeCall
	sending bool // a pipeline is in flight or about to be
}

// pipeCall is one request's part of a pipeline: send queues its commands
// on the pipeline; wake tells it that they ran (false) or that it is to
// send the next pipeline (true).
type pipeCall struct {
	ctx  context.Context
	send func(redis.Pipeliner)
	sent bool // send ran: set by the request sending the pipeline, before wake
	tail *redis.Cmd
	wake chan bool
}

// maxPipeBatch bounds the commands of one pipeline's requests.
const maxPipeBatch = 128

func newPipeBatch(client redis.UniversalClient, timeout time.Duration) *pipeBatch {
	return &pipeBatch{client: client, timeout: timeout}
}

// run sends send's commands in the next pipeline and returns once they
// ran; their replies and errors are in the commands send queued. sent is
// false when ctx was done before the pipeline went, and send never ran.
// ctx bounds the pipeline when it carries this request alone.
func (b *pipeBatch) run(ctx context.Context, send func(redis.Pipeliner)) (sent bool) {
	sent, _ = b.runTail(ctx, send)
	return sent
}

// runTail is run, and also returns the command b.tail added after the
// pipeline's requests (nil if none).
func (b *pipeBatch) runTail(ctx context.Context, send func(redis.Pipeliner)) (sent bool, tail *redis.Cmd) {
	c := &pipeCall{ctx: ctx, send: send, wake: make(chan bool, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := !b.sending
	b.sending = true
	b.mu.Unlock()
	if !lead && !<-c.wake {
		return c.sent, c.tail // sent by another request's pipeline, or left out
	}
	b.flush(ctx, c)
	return c.sent, c.tail
}

// flush sends the queued requests (at most maxPipeBatch, leaving out
// those whose context is done) in one pipeline, wakes them, and hands the
// next pipeline to the first request still queued, if any. self is the
// request sending it, and ctx its context.
func (b *pipeBatch) flush(ctx context.Context, self *pipeCall) {
	b.mu.Lock()
	batch := make([]*pipeCall, 0, min(len(b.queue), maxPipeBatch))
	var late []*pipeCall
	i := 0
	for ; i < len(b.queue) && len(batch) < maxPipeBatch; i++ {
		if c := b.queue[i]; c.ctx.Err() != nil {
			late = append(late, c)
		} else {
			batch = append(batch, c)
		}
	}
	b.queue = append(b.queue[:0], b.queue[i:]...)
	b.mu.Unlock()
	defer b.done(batch, late) // also if a command panics: no request waits forever

	if len(batch) == 0 {
		return
	}
	if len(batch) > 1 || batch[0] != self {
		// The pipeline is every request's: no one request's cancellation
		// may fail the others, and it runs until the last one's deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(context.Background(), latestDeadline(batch, b.timeout))
		defer cancel()
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.sent = true
		c.send(pipe)
	}
	if b.tail != nil {
		t := b.tail(ctx, pipe)
		for _, c := range batch {
			c.tail = t
		}
	}
	_, _ = pipe.Exec(ctx) // each command keeps its own error
}

// latestDeadline is the latest deadline of the batch's requests, at most
// timeout from now (also for a request without one).
func latestDeadline(batch []*pipeCall, timeout time.Duration) time.Time {
	limit := time.Now().Add(timeout)
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok || d.After(limit) {
			return limit
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest
}

// done wakes the requests of a pipeline that ran, and those left out of
// it, and hands the next one to the first request queued meanwhile.
func (b *pipeBatch) done(batch, late []*pipeCall) {
	b.mu.Lock()
	var next *pipeCall
	if len(b.queue) > 0 {
		next = b.queue[0]
	} else {
		b.sending = false
	}
	b.mu.Unlock()
	for _, c := range batch {
		c.wake <- false
	}
	for _, c := range late {
		c.wake <- false
	}
	if next != nil {
		next.wake <- true
	}
}
