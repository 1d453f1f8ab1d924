from gateway_stats.cli import main

raise SystemExit(main())
