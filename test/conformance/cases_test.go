package conformance

// cases are the mesh conformance tests that pass against the current
// binary: every test of sigs.k8s.io/gateway-api/conformance@v1.6.3
// tests/mesh, each transcribed from its <file>.go. pending_test.go adds the
// failing ones when built with the conformance_pending tag.
var cases = []Case{
	// mesh-basic.go
	{
		Name: "MeshBasic",
		Exchanges: []Exchange{{
			Request:  Request{Host: "echo", Method: "GET"},
			Response: Response{StatusCode: 200},
		}},
	},

	// mesh-frontend.go
	{
		Name:      "MeshFrontend",
		Manifests: []string{"tests/mesh/mesh-frontend.yaml"},
		Exchanges: []Exchange{{
			TestCaseName: "Send to service",
			Request:      Request{Host: "echo-v2", Method: "GET"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "set"}},
			Backend:      "echo-v2",
		}, {
			// v2.Address is echo-v2's pod IP: the client's ztunnel sends
			// it straight to the pod, past the service's waypoint.
			TestCaseName: "Send to pod IP",
			Request:      Request{Host: echoV2.IP + ":8080", Method: "GET"},
			Response:     Response{StatusCode: 200, AbsentHeaders: []string{"X-Header-Set"}},
			Backend:      "echo-v2",
		}},
	},

	// mesh-frontend-hostname.go
	{
		Name:      "MeshFrontendHostname",
		Manifests: []string{"tests/mesh/mesh-frontend.yaml"},
		Exchanges: []Exchange{{
			TestCaseName: "Send to service with wrong hostname",
			Request:      Request{Host: "echo-v2", Headers: map[string]string{"Host": "echo-v1"}, Method: "GET"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "set"}},
			Backend:      "echo-v2",
		}, {
			TestCaseName: "Send to other service with matching hostname",
			Request:      Request{Host: "echo-v1", Headers: map[string]string{"Host": "echo-v2"}, Method: "GET"},
			Response:     Response{StatusCode: 200, AbsentHeaders: []string{"X-Header-Set"}},
			Backend:      "echo-v1",
		}},
	},

	// mesh-split.go
	{
		Name:      "MeshTrafficSplit",
		Manifests: []string{"tests/mesh/mesh-split.yaml"},
		Exchanges: []Exchange{{
			Request:  Request{Host: "echo", Method: "GET", Path: "/v1"},
			Response: Response{StatusCode: 200},
			Backend:  "echo-v1",
		}, {
			Request:  Request{Host: "echo", Method: "GET", Path: "/v2"},
			Response: Response{StatusCode: 200},
			Backend:  "echo-v2",
		}},
	},

	// httproute-simple-same-namespace.go
	{
		Name:      "MeshHTTPRouteSimpleSameNamespace",
		Manifests: []string{"tests/mesh/httproute-simple-same-namespace.yaml"},
		Exchanges: []Exchange{{
			TestCaseName: "Simple HTTP request should reach infra-backend",
			Request:      Request{Path: "/", Host: "echo"},
			Response:     Response{StatusCode: 200},
			Backend:      "echo-v1",
			Namespace:    meshNS,
		}},
	},

	// httproute-matching.go
	{
		Name:      "MeshHTTPRouteMatching",
		Manifests: []string{"tests/mesh/httproute-matching.yaml"},
		Exchanges: []Exchange{
			{Request: Request{Path: "/"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/example"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/", Headers: map[string]string{"Version": "one"}}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/v2"}, Backend: "echo-v2", Namespace: meshNS},
			{Request: Request{Path: "/v2/example"}, Backend: "echo-v2", Namespace: meshNS},
			{Request: Request{Path: "/", Headers: map[string]string{"Version": "two"}}, Backend: "echo-v2", Namespace: meshNS},
			{Request: Request{Path: "/v2/"}, Backend: "echo-v2", Namespace: meshNS},
			// Not a path segment prefix so should not match /v2.
			{Request: Request{Path: "/v2example"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/foo/v2/example"}, Backend: "echo-v1", Namespace: meshNS},
		},
	},

	// httproute-weight.go
	{
		Name:      "MeshHTTPRouteWeight",
		Manifests: []string{"tests/mesh/httproute-weight.yaml"},
		Weighted: &Weighted{
			Exchange: Exchange{
				Request:   Request{Path: "/", Host: "echo"},
				Response:  Response{StatusCode: 200},
				Namespace: meshNS,
			},
			Weights: map[string]float64{"echo-v1": 0.7, "echo-v2": 0.3},
		},
	},

	// httproute-request-header-modifier.go: MeshHTTPRouteRequestHeaderModifier
	{
		Name:      "MeshHTTPRouteRequestHeaderModifier",
		Manifests: []string{"tests/mesh/httproute-request-header-modifier.yaml"},
		Exchanges: requestHeaderModifierExchanges,
	},

	// httproute-named-rule.go
	{
		Name:      "MeshHTTPRouteNamedRule",
		Manifests: []string{"tests/mesh/httproute-named-rule.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Path: "/named"},
			ExpectedRequest: &ExpectedRequest{Path: "/named"},
			Backend:         "echo-v1",
			Namespace:       meshNS,
		}, {
			Request: Request{Path: "/unnamed"},
			// The conformance data says Path "/named" here, a copy of the
			// case above: the mesh suite never compares paths, and no rule
			// of the manifest rewrites, so the backend sees "/unnamed".
			ExpectedRequest: &ExpectedRequest{Path: "/unnamed"},
			Backend:         "echo-v2",
			Namespace:       meshNS,
		}},
	},

	// mesh-ports.go
	{
		Name:      "MeshPorts",
		Manifests: []string{"tests/mesh/mesh-ports.yaml"},
		Exchanges: []Exchange{{
			TestCaseName: "Explicit port set, send to that port",
			Request:      Request{Host: "echo-v1", Method: "GET"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "v1"}},
			Backend:      "echo-v1",
		}, {
			TestCaseName: "Explicit port, send to an excluded port",
			Request:      Request{Host: "echo-v1:8080", Method: "GET"},
			Response:     Response{StatusCode: 200, AbsentHeaders: []string{"X-Header-Set"}},
			Backend:      "echo-v1",
		}, {
			TestCaseName: "No port set",
			Request:      Request{Host: "echo-v2", Method: "GET"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "v2"}},
			Backend:      "echo-v2",
		}, {
			TestCaseName: "No port set",
			Request:      Request{Host: "echo-v2:8080", Method: "GET"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "v2"}},
			Backend:      "echo-v2",
		}},
	},

	// mesh-consumer-route.go
	{
		Name:      "MeshConsumerRoute",
		Manifests: []string{"tests/mesh/mesh-consumer-route.yaml"},
		Exchanges: []Exchange{{
			TestCaseName: "request from consumer route's namespace modified by HTTPRoute",
			Client:       ConsumerClient,
			Request:      Request{Host: "echo-v1.gateway-conformance-mesh", Method: "GET", Path: "/"},
			Response:     Response{StatusCode: 200, Headers: map[string]string{"X-Header-Set": "set"}},
			Backend:      "echo-v1",
		}, {
			TestCaseName: "request not from consumer route's namespace not modified by HTTPRoute",
			Client:       MeshClient,
			Request:      Request{Host: "echo-v1.gateway-conformance-mesh", Method: "GET", Path: "/"},
			Response:     Response{StatusCode: 200, AbsentHeaders: []string{"X-Header-Set"}},
			Backend:      "echo-v1",
		}},
	},

	// httproute-query-param-matching.go
	{
		Name:      "MeshHTTPRouteQueryParamMatching",
		Manifests: []string{"tests/mesh/httproute-query-param-matching.yaml"},
		Exchanges: []Exchange{
			{Request: Request{Path: "/?animal=whale"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/?animal=dolphin"}, Backend: "echo-v2", Namespace: meshNS},
			{Request: Request{Path: "/?animal=whale&otherparam=irrelevant"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Path: "/?animal=dolphin&color=yellow"}, Backend: "echo-v2", Namespace: meshNS},
			{Request: Request{Path: "/?color=blue"}, Response: Response{StatusCode: 404}},
			{Request: Request{Path: "/?animal=dog"}, Response: Response{StatusCode: 404}},
			{Request: Request{Path: "/?animal=whaledolphin"}, Response: Response{StatusCode: 404}},
			{Request: Request{Path: "/"}, Response: Response{StatusCode: 404}},
			// Combinations of query param matching with other core matches.
			{Request: Request{Path: "/path1?animal=whale"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Headers: map[string]string{"version": "one"}, Path: "/?animal=whale"}, Backend: "echo-v2", Namespace: meshNS},
			// Matches which are ORed match when only one of them is used.
			{Request: Request{Path: "/path3?animal=shark"}, Backend: "echo-v1", Namespace: meshNS},
			{Request: Request{Headers: map[string]string{"version": "three"}, Path: "/path4?animal=kraken"}, Backend: "echo-v1", Namespace: meshNS},
			// Match types which are ANDed do not match a subset.
			{Request: Request{Path: "/?animal=shark"}, Response: Response{StatusCode: 404}},
			{Request: Request{Path: "/path4?animal=kraken"}, Response: Response{StatusCode: 404}},
			// Precedence order of the spec for requests matching several rules.
			{Request: Request{Path: "/path5?animal=hydra"}, Backend: "echo-v1", Namespace: meshNS},
		},
	},

	// httproute-303-redirect.go
	{
		Name:      "MeshHTTPRoute303Redirect",
		Manifests: []string{"tests/mesh/httproute-303-redirect.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Path: "/redirect"},
			Response:        Response{StatusCode: 303},
			RedirectRequest: &RedirectRequest{Path: "/redirect"},
			Namespace:       meshNS,
		}},
	},

	// httproute-307-redirect.go
	{
		Name:      "MeshHTTPRoute307Redirect",
		Manifests: []string{"tests/mesh/httproute-307-redirect.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Path: "/temporary"},
			Response:        Response{StatusCode: 307},
			RedirectRequest: &RedirectRequest{Path: "/temporary"},
			Namespace:       meshNS,
		}},
	},

	// httproute-308-redirect.go
	{
		Name:      "MeshHTTPRoute308Redirect",
		Manifests: []string{"tests/mesh/httproute-308-redirect.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Path: "/permanent"},
			Response:        Response{StatusCode: 308},
			RedirectRequest: &RedirectRequest{Path: "/permanent"},
			Namespace:       meshNS,
		}},
	},

	// httproute-redirect-host-and-status.go
	{
		Name:      "MeshHTTPRouteRedirectHostAndStatus",
		Manifests: []string{"tests/mesh/httproute-redirect-host-and-status.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Host: "echo", Path: "/hostname-redirect"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Host: "example.org"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/host-and-status"},
			Response:        Response{StatusCode: 301},
			RedirectRequest: &RedirectRequest{Host: "example.org"},
			Namespace:       meshNS,
		}},
	},

	// httproute-redirect-path.go
	{
		Name:      "MeshHTTPRouteRedirectPath",
		Manifests: []string{"tests/mesh/httproute-redirect-path.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Host: "echo", Path: "/original-prefix/lemon"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Path: "/replacement-prefix/lemon"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/full/path/original"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Path: "/full-path-replacement"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/path-and-host"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Host: "example.org", Path: "/replacement-prefix"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/path-and-status"},
			Response:        Response{StatusCode: 301},
			RedirectRequest: &RedirectRequest{Path: "/replacement-prefix"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/full-path-and-host"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Host: "example.org", Path: "/replacement-full"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/full-path-and-status"},
			Response:        Response{StatusCode: 301},
			RedirectRequest: &RedirectRequest{Path: "/replacement-full"},
			Namespace:       meshNS,
		}},
	},

	// httproute-redirect-port.go
	{
		Name:      "MeshHTTPRouteRedirectPort",
		Manifests: []string{"tests/mesh/httproute-redirect-port.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Host: "echo", Path: "/port"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Port: "8083"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/port-and-host"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Host: "example.org", Port: "8083"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/port-and-status"},
			Response:        Response{StatusCode: 301},
			RedirectRequest: &RedirectRequest{Port: "8083"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/port-and-host-and-status"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Port: "8083", Host: "example.org"},
			Namespace:       meshNS,
		}},
	},

	// httproute-redirect-scheme.go
	{
		Name:      "MeshHTTPRouteSchemeRedirect",
		Manifests: []string{"tests/mesh/httproute-redirect-scheme.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Host: "echo", Path: "/scheme"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Scheme: "https"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/scheme-and-host"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Host: "example.org", Scheme: "https"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/scheme-and-status"},
			Response:        Response{StatusCode: 301},
			RedirectRequest: &RedirectRequest{Scheme: "https"},
			Namespace:       meshNS,
		}, {
			Request:         Request{Host: "echo", Path: "/scheme-and-host-and-status"},
			Response:        Response{StatusCode: 302},
			RedirectRequest: &RedirectRequest{Scheme: "https", Host: "example.org"},
			Namespace:       meshNS,
		}},
	},

	// httproute-rewrite-path.go
	{
		Name:      "MeshHTTPRouteRewritePath",
		Manifests: []string{"tests/mesh/httproute-rewrite-path.yaml"},
		Exchanges: []Exchange{{
			Request:         Request{Path: "/prefix/one/two", Host: "echo"},
			ExpectedRequest: &ExpectedRequest{Path: "/one/two"},
			Backend:         "echo-v1", Namespace: meshNS,
		}, {
			Request:         Request{Path: "/strip-prefix/three", Host: "echo"},
			ExpectedRequest: &ExpectedRequest{Path: "/three"},
			Backend:         "echo-v1", Namespace: meshNS,
		}, {
			Request:         Request{Path: "/strip-prefix", Host: "echo"},
			ExpectedRequest: &ExpectedRequest{Path: "/"},
			Backend:         "echo-v1", Namespace: meshNS,
		}, {
			Request:         Request{Path: "/full/one/two", Host: "echo"},
			ExpectedRequest: &ExpectedRequest{Path: "/one"},
			Backend:         "echo-v1", Namespace: meshNS,
		}, {
			Request: Request{Host: "echo", Path: "/full/rewrite-path-and-modify-headers/test", Headers: map[string]string{
				"X-Header-Remove":     "remove-val",
				"X-Header-Add-Append": "append-val-1",
				"X-Header-Set":        "set-val",
			}},
			ExpectedRequest: &ExpectedRequest{
				Path: "/test",
				Headers: map[string]string{
					"X-Header-Add":        "header-val-1",
					"X-Header-Add-Append": "append-val-1,header-val-2",
					"X-Header-Set":        "set-overwrites-values",
				},
				AbsentHeaders: []string{"X-Header-Remove"},
			},
			Backend: "echo-v1", Namespace: meshNS,
		}, {
			Request: Request{Host: "echo", Path: "/prefix/rewrite-path-and-modify-headers/one", Headers: map[string]string{
				"X-Header-Remove":     "remove-val",
				"X-Header-Add-Append": "append-val-1",
				"X-Header-Set":        "set-val",
			}},
			ExpectedRequest: &ExpectedRequest{
				Path: "/prefix/one",
				Headers: map[string]string{
					"X-Header-Add":        "header-val-1",
					"X-Header-Add-Append": "append-val-1,header-val-2",
					"X-Header-Set":        "set-overwrites-values",
				},
				AbsentHeaders: []string{"X-Header-Remove"},
			},
			Backend: "echo-v1", Namespace: meshNS,
		}},
	},

	// httproute-request-header-modifier.go: MeshHTTPRouteBackendRequestHeaderModifier
	{
		Name:      "MeshHTTPRouteBackendRequestHeaderModifier",
		Manifests: []string{"tests/mesh/httproute-request-header-modifier-backend.yaml"},
		Exchanges: requestHeaderModifierExchanges,
	},

	// grpcroute-weight.go
	{
		Name:      "MeshGRPCRouteWeight",
		Manifests: []string{"tests/mesh/grpcroute-weight.yaml"},
		Weighted: &Weighted{
			Exchange: Exchange{
				Request:   Request{Protocol: "grpc", Path: "", Host: "echo:7070"},
				Response:  Response{StatusCode: 200},
				Namespace: meshNS,
			},
			Weights: map[string]float64{"echo-v1": 0.7, "echo-v2": 0.3},
		},
	},
}

// requestHeaderModifierExchanges are the cases of
// MeshHTTPRouteRequestHeaderModifier, which
// MeshHTTPRouteBackendRequestHeaderModifier runs too (with the filters on
// the backendRefs instead of the rules).
var requestHeaderModifierExchanges = []Exchange{{
	Request: Request{Path: "/set", Headers: map[string]string{"Some-Other-Header": "val"}},
	ExpectedRequest: &ExpectedRequest{Path: "/set", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Set":      "set-overwrites-values",
	}},
	Backend: "echo-v1", Namespace: meshNS,
}, {
	Request: Request{Path: "/set", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Set":      "some-other-value",
	}},
	ExpectedRequest: &ExpectedRequest{Path: "/set", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Set":      "set-overwrites-values",
	}},
	Backend: "echo-v1", Namespace: meshNS,
}, {
	Request: Request{Path: "/add", Headers: map[string]string{"Some-Other-Header": "val"}},
	ExpectedRequest: &ExpectedRequest{Path: "/add", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Add":      "add-appends-values",
	}},
	Backend: "echo-v1", Namespace: meshNS,
}, {
	Request: Request{Path: "/add", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Add":      "some-other-value",
	}},
	ExpectedRequest: &ExpectedRequest{Path: "/add", Headers: map[string]string{
		"Some-Other-Header": "val",
		"X-Header-Add":      "some-other-value,add-appends-values",
	}},
	Backend: "echo-v1", Namespace: meshNS,
}, {
	Request:         Request{Path: "/remove", Headers: map[string]string{"X-Header-Remove": "val"}},
	ExpectedRequest: &ExpectedRequest{Path: "/remove", AbsentHeaders: []string{"X-Header-Remove"}},
	Backend:         "echo-v1", Namespace: meshNS,
}, {
	Request: Request{Path: "/multiple", Headers: map[string]string{
		"X-Header-Set-2":    "set-val-2",
		"X-Header-Add-2":    "add-val-2",
		"X-Header-Remove-2": "remove-val-2",
		"Another-Header":    "another-header-val",
	}},
	ExpectedRequest: &ExpectedRequest{
		Path: "/multiple",
		Headers: map[string]string{
			"X-Header-Set-1": "header-set-1",
			"X-Header-Set-2": "header-set-2",
			"X-Header-Add-1": "header-add-1",
			"X-Header-Add-2": "add-val-2,header-add-2",
			"X-Header-Add-3": "header-add-3",
			"Another-Header": "another-header-val",
		},
		AbsentHeaders: []string{"X-Header-Remove-1", "X-Header-Remove-2"},
	},
	Backend: "echo-v1", Namespace: meshNS,
}, {
	Request: Request{Path: "/case-insensitivity", Headers: map[string]string{
		// The filter uses canonicalized header names, the request
		// lower-case names.
		"x-header-set":    "original-val-set",
		"x-header-add":    "original-val-add",
		"x-header-remove": "original-val-remove",
		"Another-Header":  "another-header-val",
	}},
	ExpectedRequest: &ExpectedRequest{
		Path: "/case-insensitivity",
		Headers: map[string]string{
			"X-Header-Set":   "header-set",
			"X-Header-Add":   "original-val-add,header-add",
			"Another-Header": "another-header-val",
		},
		AbsentHeaders: []string{"x-header-remove", "X-Header-Remove"},
	},
	Backend: "echo-v1", Namespace: meshNS,
}}
