package org.chartlight.sandbox;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.SpringBootConfiguration;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.task.TaskSchedulingAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.annotation.Import;
import org.springframework.core.env.Environment;

/**
 * Entry point of chartlight's HAPI FHIR sandbox: an R4 JPA server on H2 at
 * {@code http://127.0.0.1:<server.port>/fhir}.
 *
 * <p>Settings (command line {@code --name=value}, {@code -Dname=value} or the environment):
 * {@code server.port} / {@code SERVER_PORT} (default 8080) and {@code sandbox.h2-file} /
 * {@code SANDBOX_H2_FILE} (an H2 file path without extension; empty means in-memory).
 *
 * <p>Persistence, the REST server and request validation are built by {@link PersistenceConfig},
 * {@link FhirServerConfig} and {@link ValidationConfig}; the rest comes from HAPI's own
 * configuration classes.
 */
@SpringBootConfiguration
// Spring Boot's JPA, datasource and scheduling defaults would fight HAPI's own beans; Quartz is
// run by HAPI itself; Flyway (HAPI migrates its own schema), Thymeleaf and the Elasticsearch
// clients are on the classpath only as HAPI's dependencies.
@EnableAutoConfiguration(
		exclude = {
			DataSourceAutoConfiguration.class,
			HibernateJpaAutoConfiguration.class,
			JpaRepositoriesAutoConfiguration.class,
			QuartzAutoConfiguration.class,
			TaskSchedulingAutoConfiguration.class,
			FlywayAutoConfiguration.class,
			ThymeleafAutoConfiguration.class,
			ElasticsearchClientAutoConfiguration.class,
			ElasticsearchRestClientAutoConfiguration.class
		})
@Import({
	PersistenceConfig.class,
	FhirServerConfig.class,
	ValidationConfig.class,
	JpaR4Config.class,
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionChannelConfig.class,
	ThreadPoolFactoryConfig.class
})
public class SandboxServer {

	private static final Logger LOG = LoggerFactory.getLogger(SandboxServer.class);

	/** Defaults; anything given on the command line, as a system property or env var wins. */
	static final Map<String, Object> DEFAULTS = Map.ofEntries(
			Map.entry("server.address", "127.0.0.1"),
			Map.entry("server.port", "8080"),
			Map.entry("sandbox.h2-file", ""),
			// HAPI has bean cycles (hapifhir/hapi-fhir#3867).
			Map.entry("spring.main.allow-circular-references", "true"),
			Map.entry("spring.main.banner-mode", "off"),
			// Attachments of 50 MB and more arrive as one request body.
			Map.entry("server.tomcat.max-swallow-size", "-1"),
			Map.entry("server.tomcat.max-http-form-post-size", "-1"),
			Map.entry("spring.servlet.multipart.max-file-size", "-1"),
			Map.entry("spring.servlet.multipart.max-request-size", "-1"),
			Map.entry("spring.jmx.enabled", "false"),
			Map.entry("spring.mvc.problemdetails.enabled", "false"),
			// Startup lines only; nothing per request.
			Map.entry("logging.level.root", "WARN"),
			Map.entry("logging.level.org.chartlight", "INFO"),
			Map.entry("logging.level.org.springframework.boot.web.embedded.tomcat", "INFO"),
			// HAPI logs every refused request (a validation 422 included) with a stack trace.
			Map.entry("logging.level.ca.uhn.fhir.interceptor.executor.BaseInterceptorService", "OFF"),
			Map.entry("logging.level.ca.uhn.fhir.parser.LenientErrorHandler", "ERROR"),
			Map.entry(
					"logging.level.org.springframework.context.support.PostProcessorRegistrationDelegate",
					"ERROR"));

	public static void main(String[] args) {
		SpringApplication app = new SpringApplication(SandboxServer.class);
		app.setDefaultProperties(DEFAULTS);
		ConfigurableApplicationContext context = app.run(args);
		Environment env = context.getEnvironment();
		LOG.info(
				"FHIR R4 sandbox ready at http://{}:{}/fhir",
				env.getProperty("server.address"),
				env.getProperty("local.server.port"));
	}
}
