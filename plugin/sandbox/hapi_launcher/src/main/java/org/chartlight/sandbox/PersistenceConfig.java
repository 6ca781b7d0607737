package org.chartlight.sandbox;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import jakarta.persistence.EntityManagerFactory;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/** H2 database, Hibernate and the JPA storage settings of the sandbox. */
@Configuration
public class PersistenceConfig {

	private static final Logger LOG = LoggerFactory.getLogger(PersistenceConfig.class);

	@Bean(destroyMethod = "close")
	public DataSource dataSource(@Value("${sandbox.h2-file:}") String h2File) {
		// Spring closes the pool at shutdown; H2 must not close the database first. No .trace.db
		// file: it fills with Hibernate's harmless temporary-table DDL failures.
		String url = h2File.isBlank()
				? "jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1;DB_CLOSE_ON_EXIT=FALSE"
				: "jdbc:h2:file:" + Path.of(h2File).toAbsolutePath()
						// WRITE_DELAY=0: a commit is on disk before the client hears of it, so a
						// killed server never loses a write it acknowledged (H2 defaults to 500 ms).
						+ ";DB_CLOSE_ON_EXIT=FALSE;TRACE_LEVEL_FILE=0;WRITE_DELAY=0";
		LOG.info("H2 database: {}", h2File.isBlank() ? "in memory" : Path.of(h2File).toAbsolutePath());
		HikariConfig config = new HikariConfig();
		config.setJdbcUrl(url);
		config.setUsername("sa");
		config.setPassword("");
		config.setMaximumPoolSize(10);
		config.setPoolName("sandbox-h2");
		return new HikariDataSource(config);
	}

	@Bean
	public JpaStorageSettings storageSettings(@Value("${server.port}") int port) {
		JpaStorageSettings settings = new JpaStorageSettings();
		// Tests expect a repeated search to see writes made a moment ago.
		settings.setReuseCachedSearchResultsForMillis(null);
		// $expunge with expungeEverything resets the server between test sessions.
		settings.setExpungeEnabled(true);
		settings.setAllowMultipleDelete(true);
		// Behave like a production server: dangling references are errors.
		settings.setEnforceReferentialIntegrityOnWrite(true);
		settings.setEnforceReferentialIntegrityOnDelete(true);
		settings.setAutoCreatePlaceholderReferenceTargets(false);
		settings.setAllowExternalReferences(false);
		// Absolute references to this server itself (as EHRs often write them) are local ones.
		settings.setTreatBaseUrlsAsLocal(Set.of(
				"http://127.0.0.1:" + port + "/fhir", "http://localhost:" + port + "/fhir"));
		settings.setHibernateSearchIndexFullText(false);
		settings.setHibernateSearchIndexSearchParams(false);
		settings.setFetchSizeDefaultMaximum(FhirServerConfig.MAX_PAGE_SIZE);
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		return new SubscriptionSettings();
	}

	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		factory.setJpaPropertyMap(hibernateProperties());
		return factory;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	/** Spring Boot's spring.jpa.* properties do not reach a hand-built factory, so set them here. */
	private static Map<String, Object> hibernateProperties() {
		Map<String, Object> props = new HashMap<>();
		// H2 is not auto-detected by HAPI; without it HAPI fails with a NullPointerException.
		props.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		props.put("hibernate.hbm2ddl.auto", "update");
		props.put("hibernate.search.enabled", "false");
		props.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		props.put("hibernate.jdbc.batch_size", "20");
		props.put("hibernate.cache.use_query_cache", "false");
		props.put("hibernate.cache.use_second_level_cache", "false");
		props.put("hibernate.cache.use_structured_entries", "false");
		props.put("hibernate.cache.use_minimal_puts", "false");
		props.put("hibernate.format_sql", "false");
		props.put("hibernate.show_sql", "false");
		return props;
	}
}
