"""One module per `lina` command or command group; `lina_cli.app` registers them."""
