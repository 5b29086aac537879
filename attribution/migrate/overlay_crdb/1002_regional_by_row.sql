-- Event tables are REGIONAL BY ROW: crdb_region (part of the primary key through implicit
-- partitioning) is computed from the recording node's region by the configured map.
ALTER TABLE links ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS ({{REGION_CASE}}) STORED;
ALTER TABLE links SET LOCALITY REGIONAL BY ROW AS crdb_region;
ALTER TABLE clicks ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS ({{REGION_CASE}}) STORED;
ALTER TABLE clicks SET LOCALITY REGIONAL BY ROW AS crdb_region;
ALTER TABLE registrations ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS ({{REGION_CASE}}) STORED;
ALTER TABLE registrations SET LOCALITY REGIONAL BY ROW AS crdb_region;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS ({{REGION_CASE}}) STORED;
ALTER TABLE decisions SET LOCALITY REGIONAL BY ROW AS crdb_region;
ALTER TABLE grants ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS ({{REGION_CASE}}) STORED;
ALTER TABLE grants SET LOCALITY REGIONAL BY ROW AS crdb_region;
