from chatdesk.cli import main

main()
