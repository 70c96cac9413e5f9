package agentexec

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// TestRefusedWebSocketUpgradeFallsBackToSPDY: an API server (or proxy) that answers the WebSocket exec
// request with 403 instead of switching protocols makes the executor fail with an error upgradeRefused
// recognises, so the fallback executor tries SPDY, as kubectl exec does.
func TestRefusedWebSocketUpgradeFallsBackToSPDY(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upgrade refused", http.StatusForbidden)
	}))
	defer srv.Close()
	ws, err := remotecommand.NewWebSocketExecutor(&rest.Config{Host: srv.URL}, http.MethodGet, srv.URL+"/exec")
	if err != nil {
		t.Fatal(err)
	}
	err = ws.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: discard{}})
	if err == nil || !upgradeRefused(err) {
		t.Errorf("refused upgrade: error %v (%T) is not recognised as one, so SPDY would never be tried", err, err)
	}
	if upgradeRefused(errors.New("command terminated with exit code 1")) {
		t.Error("an in-pod command's failure is taken for a refused upgrade")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
