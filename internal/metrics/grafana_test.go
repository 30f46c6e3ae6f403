package metrics

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// metricRE finds the metric names in a PromQL expression: every word that
// names a moat, process or Go runtime metric.
var metricRE = regexp.MustCompile(`\b(?:moat|process|go)_[a-z0-9_]+\b`)

// The dashboard in dist/ queries only metrics moat exports: names from
// this package's registry with every guard on, and in docs/metrics.md.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../dist/grafana/moat.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dist/grafana/moat.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Fatal("dashboard without title or uid")
	}

	reg, err := Registry(NewCollector(func(context.Context) Snapshot { return snapshot() }))
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, mf := range mfs {
		exported[mf.GetName()] = true
	}
	docs, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}

	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		if strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") {
			t.Errorf("unbalanced query %q", e)
		}
		for _, name := range metricRE.FindAllString(e, -1) {
			// A histogram's series carry suffixes its family does not.
			if base := strings.TrimSuffix(name, "_bucket"); base != name && exported[base] {
				name = base
			}
			used[name] = true
			if !exported[name] {
				t.Errorf("query %q uses %s, which moat does not export", e, name)
			}
			if strings.HasPrefix(name, "moat_") && !strings.Contains(string(docs), "`"+name+"`") {
				t.Errorf("%s is not in docs/metrics.md", name)
			}
		}
	}
	if len(used) < 20 {
		t.Errorf("the dashboard uses only %d metrics", len(used))
	}
	// Every moat metric has a panel.
	for name := range exported {
		if strings.HasPrefix(name, "moat_") && !used[name] && name != "moat_kernel_bytes_total" {
			t.Errorf("%s has no panel", name)
		}
	}
}
