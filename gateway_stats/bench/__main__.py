from gateway_stats.bench.driver import main

raise SystemExit(main())
