package outergate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// clientCommand is `caddy outergate client ...`: the managed clients of a
// running gateway, through its admin API (admin_clients.go).
func clientCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client create|list|show|update|rotate|delete",
		Short: "Manages the clients of a running gateway through its admin API",
		Long: `
Manages clients at runtime through the admin API of a running gateway,
without a reload: with the memory store they are kept in Caddy's storage,
with the Redis store in Redis, shared by every instance.

  create <id> [--scope S] [--json '{...}']  new client; prints its secret once
  list                                     configured and managed clients
  show <id>                                one client
  update <id> [--scope S] [--json '{...}'] change a managed client's settings
  rotate <id> [--grace 24h]                new secret; the old one works for --grace
  delete <id>                              delete a client and revoke its tokens

--json holds any per-client field of a Caddyfile client block, as JSON.
The admin address is --address, else that of --config, else Caddy's
default (localhost:2019).
`,
	}
	cmd.PersistentFlags().String("address", "", "The admin API address (default: that of --config, or localhost:2019)")
	cmd.PersistentFlags().StringP("config", "c", "", "Configuration file to read the admin address from")
	cmd.PersistentFlags().StringP("adapter", "a", "", "Name of config adapter to apply to --config")
	sub := func(use, short string, args cobra.PositionalArgs, run func(caddycmd.Flags) (int, error)) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, Args: args, RunE: caddycmd.WrapCommandFuncForCobra(run)}
		cmd.AddCommand(c)
		return c
	}
	create := sub("create <id>", "Creates a client and prints its secret once", cobra.ExactArgs(1), cmdClientCreate)
	create.Flags().String("scope", "", "Space-separated scopes (default: the handler's scope)")
	create.Flags().String("json", "", "More client fields, as a JSON object")
	sub("list", "Lists configured and managed clients", cobra.NoArgs, cmdClientList)
	sub("show <id>", "Shows one client", cobra.ExactArgs(1), cmdClientShow)
	update := sub("update <id>", "Changes a managed client's settings", cobra.ExactArgs(1), cmdClientUpdate)
	update.Flags().String("scope", "", "New space-separated scopes")
	update.Flags().String("json", "", "The fields to change, as a JSON object")
	rotate := sub("rotate <id>", "Gives a client a new secret and prints it once", cobra.ExactArgs(1), cmdClientRotate)
	rotate.Flags().String("grace", "", "How long the current secret keeps working (default: it stops at once)")
	sub("delete <id>", "Deletes a managed client and revokes its tokens", cobra.ExactArgs(1), cmdClientDelete)
	return cmd
}

// adminRequest sends one request to the admin API named by the flags and
// returns the answer's body; an error status is an error with its message.
func adminRequest(fl caddycmd.Flags, method, uri string, body any) ([]byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin address: %w", err)
	}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// clientFields merges --json and --scope into one object.
func clientFields(fl caddycmd.Flags) (map[string]any, error) {
	fields := map[string]any{}
	if raw := fl.String("json"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &fields); err != nil {
			return nil, fmt.Errorf("--json must be a JSON object: %v", err)
		}
	}
	if s := fl.String("scope"); s != "" {
		fields["scope"] = s
	}
	return fields, nil
}

// clientURI is the admin path of one client.
func clientURI(id string, rest ...string) string {
	u := clientsPath + "/" + url.PathEscape(id)
	for _, r := range rest {
		u += "/" + r
	}
	return u
}

// printSecret prints a new secret once, with the id, as new-client does.
func printSecret(raw []byte, extra string) (int, error) {
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		GraceUntil   string `json:"grace_until"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.ClientSecret == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("unexpected answer from the admin API")
	}
	fmt.Printf("client_id: %s\nclient_secret: %s\n", out.ClientID, out.ClientSecret)
	if out.GraceUntil != "" {
		fmt.Printf("previous secret works until: %s\n", out.GraceUntil)
	}
	fmt.Printf("\n# %s The secret is shown only now; only its hash is kept.\n", extra)
	return caddy.ExitCodeSuccess, nil
}

// printJSON prints an admin answer indented.
func printJSON(raw []byte) (int, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		os.Stdout.Write(raw)
		return caddy.ExitCodeSuccess, nil
	}
	buf.WriteByte('\n')
	_, _ = buf.WriteTo(os.Stdout)
	return caddy.ExitCodeSuccess, nil
}

func cmdClientCreate(fl caddycmd.Flags) (int, error) {
	fields, err := clientFields(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fields["id"] = fl.Arg(0)
	raw, err := adminRequest(fl, http.MethodPost, clientsPath, fields)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printSecret(raw, "Client created.")
}

func cmdClientList(fl caddycmd.Flags) (int, error) {
	raw, err := adminRequest(fl, http.MethodGet, clientsPath, nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printJSON(raw)
}

func cmdClientShow(fl caddycmd.Flags) (int, error) {
	raw, err := adminRequest(fl, http.MethodGet, clientURI(fl.Arg(0)), nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printJSON(raw)
}

func cmdClientUpdate(fl caddycmd.Flags) (int, error) {
	fields, err := clientFields(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	raw, err := adminRequest(fl, http.MethodPatch, clientURI(fl.Arg(0)), fields)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printJSON(raw)
}

func cmdClientRotate(fl caddycmd.Flags) (int, error) {
	body := map[string]string{}
	if g := fl.String("grace"); g != "" {
		body["grace"] = g
	}
	raw, err := adminRequest(fl, http.MethodPost, clientURI(fl.Arg(0), "rotate"), body)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printSecret(raw, "Secret rotated.")
}

func cmdClientDelete(fl caddycmd.Flags) (int, error) {
	raw, err := adminRequest(fl, http.MethodDelete, clientURI(fl.Arg(0)), nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return printJSON(raw)
}
