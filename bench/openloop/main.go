// Command openloop is the benchmark's load generator: it POSTs pre-generated request bodies (one per line of
// -bodies) to -url at a fixed arrival rate, whatever the answers do (an open loop), and writes one JSON line
// per request to -out: its index, HTTP status, latency in ms counted from the request's scheduled time (so a
// slow answer shows up as queueing, not as a lower rate: no coordinated omission), and, from a verdict
// answer, `degraded`, `decision` and the worker's own `latency_ms`. A summary goes to stdout.
//
// It is Go rather than Python so that on a 2-core box it does not measure itself: a Python client took
// about a core at 500 requests/s. The Authorization header comes from the environment (OPENLOOP_AUTHORIZATION),
// never from the command line.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// result is one request's outcome; Status 0 means no HTTP answer (Error says why).
type result struct {
	I         int      `json:"i"`
	Status    int      `json:"status"`
	LatencyMs float64  `json:"latency_ms"`
	Degraded  bool     `json:"degraded"`
	Decision  string   `json:"decision,omitempty"`
	WorkerMs  *float64 `json:"worker_ms,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// verdict holds the fields of a verdict answer the benchmark counts.
type verdict struct {
	Degraded  bool     `json:"degraded"`
	Decision  string   `json:"decision"`
	LatencyMs *float64 `json:"latency_ms"`
}

type summary struct {
	Sent          int     `json:"sent"`
	Answered      int     `json:"answered"`
	Failures      int     `json:"failures"`
	Rate          float64 `json:"rate"`
	ElapsedS      float64 `json:"elapsed_s"`
	CPUS          float64 `json:"cpu_s"`
	MaxSendLagMs  float64 `json:"max_send_lag_ms"`
	LateSends     int     `json:"late_sends"`
	MaxConcurrent int     `json:"max_concurrent"`
}

func readBodies(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for scanner.Scan() {
		if line := scanner.Bytes(); len(line) > 0 {
			bodies = append(bodies, append([]byte(nil), line...))
		}
	}
	return bodies, scanner.Err()
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return -1
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

func main() {
	url := flag.String("url", "", "target URL, e.g. http://127.0.0.1:8000/v1/score")
	bodiesPath := flag.String("bodies", "", "file with one request body per line; every line is sent once")
	rate := flag.Float64("rate", 0, "requests per second")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout (connection, request and answer)")
	outPath := flag.String("out", "", "where to write one JSON line per request")
	flag.Parse()
	if *url == "" || *bodiesPath == "" || *outPath == "" || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "usage: openloop -url URL -bodies FILE -rate N -out FILE [-timeout 10s]")
		os.Exit(2)
	}
	bodies, err := readBodies(*bodiesPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading bodies:", err)
		os.Exit(1)
	}
	authorization := os.Getenv("OPENLOOP_AUTHORIZATION")
	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 8192,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	results := make([]result, len(bodies))
	var (
		wg                      sync.WaitGroup
		mu                      sync.Mutex
		inFlight, maxConcurrent int
	)
	send := func(i int, scheduled time.Time) {
		defer wg.Done()
		mu.Lock()
		inFlight++
		if inFlight > maxConcurrent {
			maxConcurrent = inFlight
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		r := &results[i]
		r.I = i
		req, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(bodies[i]))
		if err != nil {
			r.Error = err.Error()
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := client.Do(req)
		if err != nil {
			r.Error = err.Error()
			r.LatencyMs = float64(time.Since(scheduled).Microseconds()) / 1000
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.LatencyMs = float64(time.Since(scheduled).Microseconds()) / 1000
		if err != nil {
			r.Error = err.Error()
			return
		}
		r.Status = resp.StatusCode
		if resp.StatusCode == http.StatusOK {
			var v verdict
			if json.Unmarshal(body, &v) == nil {
				r.Degraded, r.Decision, r.WorkerMs = v.Degraded, v.Decision, v.LatencyMs
			}
		}
	}

	interval := float64(time.Second) / *rate
	start := time.Now().Add(100 * time.Millisecond)
	var maxLag time.Duration
	late := 0
	for i := range bodies {
		scheduled := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		if lag := time.Since(scheduled); lag > maxLag {
			maxLag = lag
		}
		if time.Since(scheduled) > time.Millisecond {
			late++
		}
		wg.Add(1)
		go send(i, scheduled)
	}
	wg.Wait()
	elapsed := time.Since(start)

	out, err := os.Create(*outPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "writing results:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	s := summary{Sent: len(bodies), Rate: *rate}
	for _, r := range results {
		if r.Status == 0 {
			s.Failures++
		} else {
			s.Answered++
		}
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "writing results:", err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "writing results:", err)
		os.Exit(1)
	}
	out.Close()
	s.ElapsedS = elapsed.Seconds()
	s.CPUS = cpuSeconds()
	s.MaxSendLagMs = float64(maxLag.Microseconds()) / 1000
	s.LateSends = late
	s.MaxConcurrent = maxConcurrent
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		os.Exit(1)
	}
}
