from trustchain.cli import main

raise SystemExit(main())
