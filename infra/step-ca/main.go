// Command step-ca runs smallstep's certificate authority. Debian ships the
// certificates source without cmd/, so this stands in for upstream's
// cmd/step-ca/main.go: `step-ca <ca.json> --password-file <file>` starts the CA.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"
	"go.step.sm/cli-utils/command"
)

func main() {
	app := cli.NewApp()
	app.Name = "step-ca"
	app.HelpName = "step-ca"
	app.Usage = "an online certificate authority for secure automated certificate management"
	app.UsageText = commands.AppCommand.UsageText
	app.Flags = append(commands.AppCommand.Flags, cli.HelpFlag)
	// export/onboard register themselves in the commands package's init().
	app.Commands = command.Retrieve()
	app.Action = commands.AppCommand.Action
	app.Writer = os.Stdout
	app.ErrWriter = os.Stderr
	if err := app.Run(configLast(os.Args, app.Commands)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// configLast moves a leading config path behind the flags: urfave/cli v1 stops
// parsing flags at the first positional argument.
func configLast(args []string, cmds []cli.Command) []string {
	if len(args) < 3 || strings.HasPrefix(args[1], "-") || args[1] == "help" || args[1] == "h" {
		return args
	}
	for _, c := range cmds {
		if c.HasName(args[1]) {
			return args
		}
	}
	out := append([]string{args[0]}, args[2:]...)
	return append(out, args[1])
}
