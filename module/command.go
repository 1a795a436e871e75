package outergate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "outergate",
		Usage: "new-client <id> | hash-secret | client create|list|show|update|rotate|delete",
		Short: "Creates outergate clients and hashes their secrets",
		Long: `
Helpers for onboarding integrators of an outergate gateway.

  new-client <id>  generates a client secret (32 random bytes, base64url),
                   prints it once with the Caddyfile line that configures
                   the client with its SHA-256 hash; the secret is written
                   nowhere else.
  hash-secret      reads a secret from stdin and prints sha256:<hex>.
  client ...       manages clients of a running gateway through its admin
                   API, without a reload (see "outergate client --help").
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(&cobra.Command{
				Use:   "new-client <id>",
				Short: "Generates a client id and secret and prints the Caddyfile line",
				Args:  cobra.ExactArgs(1),
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdNewClient),
			})
			cmd.AddCommand(&cobra.Command{
				Use:   "hash-secret",
				Short: "Hashes a secret read from stdin for a client line",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdHashSecret),
			})
			cmd.AddCommand(clientCommand())
		},
	})
}

// validClientID keeps ids to what fits unquoted in a Caddyfile, a log
// field and a Redis key.
var validClientID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func cmdNewClient(fl caddycmd.Flags) (int, error) {
	id := fl.Arg(0)
	if !validClientID.MatchString(id) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("client id %q: use 1-128 letters, digits, '.', '_' or '-'", id)
	}
	secret, err := randomSecret()
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("generating secret: %w", err)
	}
	fmt.Printf("client_id: %s\nclient_secret: %s\n\n", id, secret)
	fmt.Printf("# Add to the outergate block; the secret above is shown only now:\nclient %s %s\n", id, secretHash(secret))
	return caddy.ExitCodeSuccess, nil
}

func cmdHashSecret(_ caddycmd.Flags) (int, error) {
	line, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reading secret: %w", err)
	}
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return caddy.ExitCodeFailedStartup, errors.New("no secret on stdin")
	}
	fmt.Println(secretHash(secret))
	return caddy.ExitCodeSuccess, nil
}
