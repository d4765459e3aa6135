package main

import (
	"errors"
	"net/http"
	"time"
)

// waitHTTPReady waits for GET /healthz/ready = 200, or for the process to end.
func waitHTTPReady(status string, exited <-chan error) error {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return errors.Join(errors.New("the waypoint exited before it was ready"), err)
		default:
		}
		resp, err := cl.Get("http://" + status + "/healthz/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the waypoint was not ready within 60s")
}
