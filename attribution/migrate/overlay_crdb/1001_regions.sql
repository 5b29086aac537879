-- CockroachDB multi-region overlay: applied only when the server is CockroachDB.
ALTER DATABASE {{DATABASE}} SET PRIMARY REGION {{PRIMARY_REGION}};
{{ADD_REGIONS}}
ALTER TABLE campaigns SET LOCALITY GLOBAL;
