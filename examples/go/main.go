// A receiver for hookgate's deliveries, signed with sign = "standard".
//
// Go's standard library only. Each request's webhook-signature is checked against
// an HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>" keyed with the
// base64-decoded part of the whsec_ secret (the Standard Webhooks scheme), and
// webhook-timestamp must be within five minutes of this machine's clock.
// webhook-id is the idempotency key: hookgate delivers at least once, so an id can
// arrive again (a retry after a timeout, a replay); it is answered 200 without
// being processed twice.
//
//	WEBHOOK_SECRET=whsec_... PORT=5000 go run .
//
// Prints one line per request on stdout:
//
//	accepted id=msg_... type=order.created attempt=1
//	duplicate id=msg_...
//	rejected id=msg_... status=401 reason=...
//	failed id=msg_... error=...          (processEvent failed: answered 500, retried)
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	maxBody   = 1 << 20 // hookgate's default server.max_body
	tolerance = 5 * time.Minute
	// Ids remembered in memory, oldest forgotten first. A real service records the
	// id in its database, in the same transaction as the work the webhook causes
	// (a unique constraint on it), so a duplicate is refused even after a restart.
	seenMax = 100000
)

// processEvent is where your work goes: it runs once per event id (return an
// error to have it retried).
func processEvent(eventID, eventType string, payload []byte) error { return nil }

// verify returns an error unless the headers sign exactly these body bytes.
func verify(key []byte, h http.Header, body []byte, now time.Time) error {
	id, timestamp, signatures := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || timestamp == "" || signatures == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	seconds, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not unix seconds")
	}
	if skew := now.Sub(time.Unix(seconds, 0)); skew > tolerance || skew < -tolerance {
		return errors.New("webhook-timestamp is more than 5 minutes away")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	expected := mac.Sum(nil)
	// Space-separated "v1,<base64>" entries: several during a secret rotation.
	for _, entry := range strings.Split(signatures, " ") {
		version, value, found := strings.Cut(entry, ",")
		if !found || version != "v1" {
			continue
		}
		given, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(given, expected) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// seenIDs holds the webhook ids already processed, bounded, safe across handlers.
type seenIDs struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string // oldest first, for forgetting
	limit int
}

func newSeenIDs(limit int) *seenIDs {
	return &seenIDs{ids: make(map[string]struct{}), limit: limit}
}

// claim is true the first time an id is seen: the caller processes it.
func (s *seenIDs) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return false
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, id)
	for len(s.ids) > s.limit && len(s.order) > 0 {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	return true
}

// release forgets an id whose processing failed, so that hookgate's retry is processed.
func (s *seenIDs) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id) // its stale entry in order is dropped when eviction reaches it
}

type event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// eventsOf lists the events a verified request carries.
func eventsOf(h http.Header, body []byte) ([]event, error) {
	if h.Get("Hookgate-Batch-Size") == "" {
		return []event{{ID: h.Get("webhook-id"), Type: h.Get("Hookgate-Event-Type"), Payload: body}}, nil
	}
	// batch_max > 1: webhook-id names the batch and each event has its own id;
	// a retried batch may regroup events, so deduplicate per event.
	var batch struct {
		Events []event `json:"events"`
	}
	err := json.Unmarshal(body, &batch)
	return batch.Events, err
}

type receiver struct {
	key  []byte
	seen *seenIDs
}

func answer(w http.ResponseWriter, status int, payload map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(payload)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "payload_too_large"})
		return
	}
	id := orDash(r.Header.Get("webhook-id"))
	// Verify the exact bytes received, before parsing anything.
	if err := verify(rc.key, r.Header, body, time.Now()); err != nil {
		fmt.Printf("rejected id=%s status=401 reason=%s\n", id, err)
		answer(w, http.StatusUnauthorized, map[string]string{"error": "invalid_signature"})
		return
	}
	events, err := eventsOf(r.Header, body)
	if err != nil {
		fmt.Printf("failed id=%s error=%s\n", id, err)
		answer(w, http.StatusBadRequest, map[string]string{"error": "invalid_batch"})
		return
	}
	for _, e := range events {
		if !rc.receive(e, r.Header.Get("Hookgate-Attempt")) {
			answer(w, http.StatusInternalServerError, map[string]string{"error": "processing_failed"})
			return // hookgate retries
		}
	}
	answer(w, http.StatusOK, map[string]string{"status": "ok"})
}

// receive processes one event unless its id was seen; false when processing failed.
func (rc *receiver) receive(e event, attempt string) bool {
	if !rc.seen.claim(e.ID) {
		fmt.Printf("duplicate id=%s\n", e.ID)
		return true
	}
	if err := processEvent(e.ID, e.Type, e.Payload); err != nil {
		rc.seen.release(e.ID)
		fmt.Printf("failed id=%s error=%s\n", e.ID, err)
		return false
	}
	fmt.Printf("accepted id=%s type=%s attempt=%s\n", e.ID, orDash(e.Type), orDash(attempt))
	return true
}

// decodeSecret returns the HMAC key of a whsec_ secret (padded or unpadded base64).
func decodeSecret(secret string) ([]byte, error) {
	if !strings.HasPrefix(secret, "whsec_") {
		return nil, errors.New("not a whsec_ secret")
	}
	encoded := strings.TrimPrefix(secret, "whsec_")
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(encoded, "="))
}

func main() {
	key, err := decodeSecret(os.Getenv("WEBHOOK_SECRET"))
	if err != nil || len(key) == 0 {
		fmt.Fprintln(os.Stderr, "receiver: set WEBHOOK_SECRET to the destination's whsec_... secret")
		os.Exit(2)
	}
	host, port := os.Getenv("HOST"), os.Getenv("PORT")
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5000"
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening host=%s port=%d\n", host, listener.Addr().(*net.TCPAddr).Port)
	server := &http.Server{
		Handler:           &receiver{key: key, seen: newSeenIDs(seenMax)},
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Fatal(server.Serve(listener))
}
