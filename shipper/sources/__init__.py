"""What every source shares: records from a decoder to the intake (`delivery`), positions
(`checkpoint`), the intake (`intake`, `quota`), where a first start begins (`first_start`),
which containers are shipped (`selection`), files on disk (`files`), and which source runs
(`choice`). One package per source: `sources.docker`, `sources.cri`."""
