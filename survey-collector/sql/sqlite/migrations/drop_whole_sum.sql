-- survey-collector storage: schema version 3 (PRAGMA user_version).
--
-- A histogram stream's summary no longer holds its sum: no question reads
-- it (percentiles come from bucket counts).
ALTER TABLE streams DROP COLUMN WholeSum;
