-- Least-privilege MariaDB/MySQL accounts of the service (README: "Remote workers over TLS").
--
--   cpt_worker  the RQ workers (donated hosts): read the stored reports, write the summary
--               tables; may change test_report's state only, never a stored report; no DDL;
--               no access to metabase_user (the testers' secret hashes) at all.
--   cpt_reader  the viewer and the read API: SELECT only, metabase_user without its secret
--               columns.
--
-- The owner account (migrations, the web app, the sweeper and the operator commands) is
-- not made here. Both accounts must connect over TLS (REQUIRE SSL; set @require = 'X509'
-- to demand a client certificate signed by the server's CA as well).
--
-- Run as an administrator of the server, after the migrations, and again after any
-- migration that adds a table (each run revokes what it does not grant):
--
--   mariadb -e "SET @db = 'cpanstats', @worker_password = '...', @reader_password = '...';
--               SOURCE deploy/mariadb/grants.sql"
--
-- Optional: @worker_host, @reader_host (the hosts the accounts may connect from, default '%').
--
-- Tables granted to neither account: alembic_version, legacy_migration,
-- legacy_migration_error (the owner's); metabase_user is the reader's without secrets only.

DELIMITER //
IF @db IS NULL OR @worker_password IS NULL OR @reader_password IS NULL THEN
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'set @db, @worker_password and @reader_password first';
END IF //
DELIMITER ;

SET @require = COALESCE(@require, 'SSL');
SET @worker = CONCAT(QUOTE('cpt_worker'), '@', QUOTE(COALESCE(@worker_host, '%')));
SET @reader = CONCAT(QUOTE('cpt_reader'), '@', QUOTE(COALESCE(@reader_host, '%')));
SET @in = CONCAT('`', REPLACE(@db, '`', '``'), '`.');

EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ', @worker, ' IDENTIFIED BY ', QUOTE(@worker_password));
EXECUTE IMMEDIATE CONCAT('ALTER USER ', @worker, ' IDENTIFIED BY ', QUOTE(@worker_password), ' REQUIRE ', @require);
EXECUTE IMMEDIATE CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', @worker);
-- the job reads each report and sets its state (storage/processing.py)
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, UPDATE (state, state_changed) ON ', @in, 'test_report TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'report_block TO ', @worker);
-- the summary rows, upserted (INSERT ... ON DUPLICATE KEY UPDATE) and taken out again
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @in, 'cpanstats TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'uploads TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'perl_version TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @in, 'release_data TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @in, 'release_summary TO ', @worker);
-- the facts parsed from report texts (storage/report_facts.py): interned rows inserted,
-- report_facts upserted (INSERT ... ON DUPLICATE KEY UPDATE needs UPDATE); never deleted
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'fact_string TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'fact_set TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'prereq_set TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'prereq_set_item TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'report_facts TO ', @worker);
-- the failure analysis's counts (storage/factor_counts.py): added to, and a row that
-- reaches zero deleted
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE ON ', @in, 'analysis_release TO ', @worker);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT, INSERT, UPDATE, DELETE ON ', @in, 'release_factor_count TO ', @worker);

EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ', @reader, ' IDENTIFIED BY ', QUOTE(@reader_password));
EXECUTE IMMEDIATE CONCAT('ALTER USER ', @reader, ' IDENTIFIED BY ', QUOTE(@reader_password), ' REQUIRE ', @require);
EXECUTE IMMEDIATE CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'test_report TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'report_block TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'cpanstats TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'uploads TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'perl_version TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'release_data TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'release_summary TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'fact_string TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'fact_set TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'prereq_set TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'prereq_set_item TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'report_facts TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'analysis_release TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'release_factor_count TO ', @reader);
EXECUTE IMMEDIATE CONCAT('GRANT SELECT ON ', @in, 'report_prereq TO ', @reader);
-- the tester's current name and e-mail on report pages; never secret_salt / secret_hash
EXECUTE IMMEDIATE CONCAT('GRANT SELECT (id, resource, fullname, email) ON ', @in, 'metabase_user TO ', @reader);
