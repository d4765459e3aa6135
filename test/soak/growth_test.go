package main

import "testing"

func TestGrowthDetection(t *testing.T) {
	flat := []Sample{{RSSKiB: 90000}, {RSSKiB: 20000, FDs: 30, Goroutines: 100}, {RSSKiB: 21000, FDs: 31, Goroutines: 101},
		{RSSKiB: 20500, FDs: 30, Goroutines: 99}, {RSSKiB: 21000, FDs: 30, Goroutines: 100}}
	if err := Growth(flat); err != nil {
		t.Errorf("flat samples reported as growth: %v", err)
	}
	leaking := []Sample{{}, {RSSKiB: 20000, Goroutines: 100}, {RSSKiB: 30000, Goroutines: 200},
		{RSSKiB: 40000, Goroutines: 300}, {RSSKiB: 50000, Goroutines: 400}}
	if err := Growth(leaking); err == nil {
		t.Error("steadily growing RSS and goroutines not reported")
	}
	small := []Sample{{}, {FDs: 10}, {FDs: 14}, {FDs: 15}, {FDs: 16}}
	if err := Growth(small); err != nil {
		t.Errorf("growth below the floor reported: %v", err)
	}
}
