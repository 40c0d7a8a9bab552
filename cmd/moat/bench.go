package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"moat/internal/loadgen"
)

// benchCmd runs `moat bench`: the load generator of internal/loadgen.
// Ctrl-C ends the measurement early and still prints the result.
func benchCmd(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadgen.Command(ctx, args, stdout, stderr)
}
