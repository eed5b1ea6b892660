from vmcli.cli import main

main()
